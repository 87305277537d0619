"""A generative model of a judge panel, and its exact Bayes-optimal posterior (pure numpy).

The model, per item:

1. The true label ``Y`` is drawn from ``prior`` over ``K`` labels (codes ``0..K-1``).
2. Each correlated group ``g`` draws one *shared latent* answer ``L_g``: ``Y`` with probability
   ``latent_accuracy``, otherwise a wrong label uniformly (a shared blind spot: same base model,
   same misleading cue).
3. Each judge abstains with probability ``abstain`` (code ``-1``), independently of everything.
   Otherwise a judge in a group copies ``L_g`` with probability ``copy_prob``; else it votes on
   its own: correct with probability ``accuracy[Y]`` (per true class), wrong uniformly otherwise.
   An ``adversarial`` judge inverts its competence: it is correct with ``1 - accuracy[Y]``.

Given the parameters, the posterior is exact: independent judges multiply in; a group's votes
are marginalised over its latent,
``P(votes_g | Y=k) = sum_l P(L_g=l | k) prod_{j in g} [c_j 1(v_j=l) + (1-c_j) P_j(v_j | k)]``;
abstentions carry no information (they are independent of ``Y``). Its argmax is the Bayes-optimal
decision, the ceiling any aggregation strategy can reach on data from the model.

Example:
    >>> m = PanelModel(judges=(JudgeModel("a", 0.9), JudgeModel("b", 0.6),
    ...                        JudgeModel("c", 0.6)))
    >>> truth, codes = m.sample(1000, seed=0)
    >>> codes.shape, set(np.unique(codes)) <= {0, 1}
    ((1000, 3), True)
    >>> post = m.bayes_posterior(np.array([[0, 1, 1]]))  # the strong judge outweighs two weak
    >>> bool(post[0, 0] > 0.5)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class JudgeModel:
    """One simulated judge.

    Attributes:
        name: Judge name (the column of the code matrix, in panel order).
        accuracy: P(correct | true label) of its own votes: one value, or one per label.
        abstain: P(abstain), independent of the item.
        group: Name of its correlated group, or None (independent).
        copy_prob: In a group: P(copy the group's shared latent answer).
        adversarial: Inverts its competence (correct with ``1 - accuracy``).
    """

    name: str
    accuracy: float | tuple[float, ...] = 0.7
    abstain: float = 0.0
    group: str | None = None
    copy_prob: float = 0.0
    adversarial: bool = False

    def correct_prob(self, k: int) -> FloatArray:
        """P(correct own vote | Y) per label, as a length-``k`` array."""
        acc = np.broadcast_to(np.asarray(self.accuracy, dtype=np.float64), (k,)).copy()
        return 1.0 - acc if self.adversarial else acc


@dataclass(frozen=True)
class PanelModel:
    """Labels, prior, judges and correlated groups of a simulated panel.

    Attributes:
        judges: The panel, in column order.
        n_labels: ``K``.
        prior: Prior over labels (default uniform).
        latent_accuracy: Group name -> P(the group's shared latent is the true label); groups
            not listed use ``default_latent_accuracy``.
        default_latent_accuracy: See above.
    """

    judges: tuple[JudgeModel, ...]
    n_labels: int = 2
    prior: tuple[float, ...] | None = None
    latent_accuracy: dict[str, float] = field(default_factory=dict)
    default_latent_accuracy: float = 0.5

    def __post_init__(self) -> None:
        if self.n_labels < 2:
            raise ValueError("n_labels must be at least 2")
        if self.prior is not None and (len(self.prior) != self.n_labels
                                       or not np.isclose(sum(self.prior), 1.0)):
            raise ValueError("prior must have n_labels entries summing to 1")
        for j in self.judges:
            if np.ndim(j.accuracy) and len(j.accuracy) != self.n_labels:  # type: ignore[arg-type]
                raise ValueError(f"judge {j.name}: one accuracy per label expected")
            if not (0 <= j.abstain <= 1 and 0 <= j.copy_prob <= 1):
                raise ValueError(f"judge {j.name}: probabilities must lie in [0, 1]")
            if j.copy_prob > 0 and j.group is None:
                raise ValueError(f"judge {j.name}: copy_prob needs a group")

    @property
    def names(self) -> tuple[str, ...]:
        """Judge names in column order."""
        return tuple(j.name for j in self.judges)

    @property
    def prior_array(self) -> FloatArray:
        """The prior as an array."""
        k = self.n_labels
        return np.full(k, 1.0 / k) if self.prior is None else np.asarray(self.prior, float)

    def groups(self) -> dict[str, list[int]]:
        """Group name -> member columns."""
        out: dict[str, list[int]] = {}
        for i, j in enumerate(self.judges):
            if j.group is not None:
                out.setdefault(j.group, []).append(i)
        return out

    def _latent_acc(self, g: str) -> float:
        return self.latent_accuracy.get(g, self.default_latent_accuracy)

    def _own_vote_probs(self, j: JudgeModel) -> FloatArray:
        """``K x K``: P(own vote l | Y = k)."""
        k = self.n_labels
        c = j.correct_prob(k)
        p = np.repeat(((1.0 - c) / (k - 1))[:, None], k, axis=1)
        p[np.arange(k), np.arange(k)] = c
        return p

    def sample(self, n_items: int, seed: int) -> tuple[IntArray, IntArray]:
        """Draw ``(truth, codes)``: ``n_items`` labels and the ``n_items x n_judges`` votes."""
        rng = np.random.default_rng(seed)
        k = self.n_labels
        truth = rng.choice(k, size=n_items, p=self.prior_array)

        def wrong(y: IntArray) -> IntArray:  # a uniformly drawn wrong label
            return (y + rng.integers(1, k, size=y.shape)) % k

        latents = {}
        for g in self.groups():
            ok = rng.random(n_items) < self._latent_acc(g)
            latents[g] = np.where(ok, truth, wrong(truth))
        codes = np.empty((n_items, len(self.judges)), dtype=np.int64)
        for i, j in enumerate(self.judges):
            ok = rng.random(n_items) < j.correct_prob(k)[truth]
            vote = np.where(ok, truth, wrong(truth))
            if j.group is not None:
                vote = np.where(rng.random(n_items) < j.copy_prob, latents[j.group], vote)
            codes[:, i] = np.where(rng.random(n_items) < j.abstain, -1, vote)
        return truth, codes

    def bayes_posterior(self, codes: IntArray) -> FloatArray:
        """Exact ``P(Y | votes)`` for each row of ``codes`` (``-1`` = abstention)."""
        codes = np.atleast_2d(np.asarray(codes))
        n = codes.shape[0]
        k = self.n_labels
        log_post = np.tile(np.log(self.prior_array), (n, 1))
        member = {i for cols in self.groups().values() for i in cols}
        # like[i, j, k] = P(own vote of judge j | Y = k), 1 for an abstention
        for i, j in enumerate(self.judges):
            if i in member:
                continue
            own = self._own_vote_probs(j)  # [truth, vote]
            v = codes[:, i]
            lik = np.where(v[:, None] >= 0, own[:, np.maximum(v, 0)].T, 1.0)
            log_post += np.log(lik)
        for g, cols in self.groups().items():
            a = self._latent_acc(g)
            # p_latent[k, l] = P(L = l | Y = k)
            p_latent = np.full((k, k), (1.0 - a) / (k - 1))
            np.fill_diagonal(p_latent, a)
            # group_lik[i, k, l] = prod_j P(v_j | Y=k, L=l)
            group_lik = np.ones((n, k, k))
            for i in cols:
                j = self.judges[i]
                own = self._own_vote_probs(j)  # [k, vote]
                v = codes[:, i]
                present = v >= 0
                vv = np.maximum(v, 0)
                p_own = own[:, vv].T  # n x k (truth)
                copy = (np.arange(k)[None, :] == vv[:, None]).astype(float)  # n x l
                term = j.copy_prob * copy[:, None, :] + (1.0 - j.copy_prob) * p_own[:, :, None]
                group_lik *= np.where(present[:, None, None], term, 1.0)
            log_post += np.log(np.einsum("ikl,kl->ik", group_lik, p_latent))
        log_post -= log_post.max(axis=1, keepdims=True)
        post = np.exp(log_post)
        return post / post.sum(axis=1, keepdims=True)


def panel(
    accuracies: Sequence[float], *, abstain: float = 0.0, prefix: str = "j",
) -> tuple[JudgeModel, ...]:
    """Independent judges ``<prefix>0, <prefix>1, ...`` with the given accuracies.

    Example:
        >>> [j.name for j in panel([0.7, 0.8])]
        ['j0', 'j1']
    """
    return tuple(JudgeModel(f"{prefix}{i}", a, abstain=abstain) for i, a in enumerate(accuracies))
