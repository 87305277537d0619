"""Dawid–Skene with correlated groups: judges that share a blind spot (same base model, same
misleading cue) agree more than independence allows, and an independence model then counts
their shared mistakes as independent evidence.

:func:`find_groups` links judges whose agreement exceeds what their confusions predict;
:func:`grouped_em` fits a model where each group has a latent answer its members copy with a
learned probability, else vote on their own (:class:`GroupedModel`). ``strategies.calibrated``
uses it as one member of its stack, started from a supervised fit.

Without gold, :func:`search_groups` chooses the groups by BIC: the independence model first,
then the candidate group (a cluster of excess agreement) that lowers the BIC most, while it
lowers it by more than :data:`MIN_BIC_GAIN`. What makes this work is the start: each grouped fit
starts from Dawid–Skene on the judges *outside* the groups. Started from Dawid–Skene on every
judge, EM stays where the herd is the truth (its members look accurate, the independent judges
look like the correlated ones); on the simulated herds of ``scenarios/sim_*.yaml`` the search
finds exactly the leader and its echoes (20 of 20 seeds on each of three panels, and no group on
the independent panel) and, with no gold at all, comes within 0.25 to 0.95 points of
Bayes-optimal on average over the 20 seeds (per seed -0.6 to 3.0; plain Dawid–Skene: 25 to 28
points below). :func:`anchored_grouped` then adds
the gold; ``calibrated`` makes it its anchor where a search found groups.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from strategies._matrix import FloatArray, IntArray, one_hot

_TINY = 1e-300


def _excess_agreement(codes: IntArray, n_labels: int, posteriors: FloatArray,
                      ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per judge pair: (z-score of the excess agreement, excess agreement, items both voted on).

    The excess is the observed agreement on the items both voted on minus the agreement that
    independent judges with their (posterior-weighted) confusions would show.
    """
    k = n_labels
    pres = (codes >= 0).astype(np.float64)
    votes = [(codes == lab).astype(np.float64) for lab in range(k)]
    counts = np.stack([posteriors.T @ v for v in votes], axis=2) + 0.01  # [truth, judge, vote]
    pi = counts / counts.sum(axis=2, keepdims=True)
    both = pres.T @ pres
    observed = sum(v.T @ v for v in votes)
    expected = sum((pres.T @ (pres * posteriors[:, c:c + 1])) * (pi[c] @ pi[c].T)
                   for c in range(k))
    with np.errstate(invalid="ignore", divide="ignore"):
        o, e = observed / both, expected / both
        zs = (o - e) / np.sqrt(np.maximum(e * (1 - e), 1e-6) / both)
    return zs, o - e, both


def _links(codes: IntArray, n_labels: int, posteriors: FloatArray, z: float, min_excess: float,
           min_overlap: int) -> tuple[np.ndarray, FloatArray]:
    """(which pairs agree more than independence allows, their z-scores)."""
    zs, excess, both = _excess_agreement(codes, n_labels, posteriors)
    link = (both >= min_overlap) & (zs > z) & (excess > min_excess)
    np.fill_diagonal(link, False)
    return link, np.where(link, zs, 0.0)


def find_groups(
    codes: IntArray, n_labels: int, posteriors: FloatArray, *, z: float = 3.0,
    min_excess: float = 0.03, min_overlap: int = 10,
) -> tuple[tuple[int, ...], ...]:
    """Groups of judges that agree more than conditional independence allows.

    For each pair of judges, the observed agreement on items both voted on is compared with the
    agreement that independent judges with their (posterior-weighted) confusions would show; a
    pair whose excess is at least ``min_excess`` and ``z`` standard errors is linked, and the
    connected components of size >= 2 are the groups.
    """
    link, _ = _links(codes, n_labels, posteriors, z, min_excess, min_overlap)
    n_comp, comp = connected_components(sparse.csr_matrix(link), directed=False)
    groups = (tuple(np.flatnonzero(comp == c).tolist()) for c in range(n_comp))
    return tuple(g for g in groups if len(g) > 1)


class GroupedModel(NamedTuple):
    """Dawid–Skene with correlated groups of judges.

    A group ``g`` has a shared latent answer ``L ~ latent[g][truth]``; its member ``j`` copies it
    with probability ``copy[j]``, else votes by its own ``confusions[j]``. Judges outside every
    group are classic Dawid–Skene judges (``copy = 0``).

    A member's factor depends only on its vote, so per group the E-step is one sparse product of
    the members' one-hot votes with a ``(members x vote) x (truth x latent)`` table of logs.
    """

    priors: FloatArray
    confusions: FloatArray
    groups: tuple[tuple[int, ...], ...]
    latent: FloatArray
    copy: FloatArray

    def log_scores(self, codes: IntArray) -> FloatArray:
        """Unnormalised log-posteriors (``n x K``) of code rows."""
        codes = np.atleast_2d(codes)
        return self._e_step(*_group_design(codes, self.groups, self.priors.shape[0]))[0]

    def tables(self) -> list[FloatArray]:
        """Per group ``[member, vote, truth, latent]``: P(vote | truth, latent)."""
        k = self.priors.shape[0]
        same = np.eye(k)[None, :, None, :]  # [1, vote, 1, latent]
        out = []
        for g in self.groups:
            idx = np.array(g)
            c = self.copy[idx][:, None, None, None]
            own = self.confusions[idx].transpose(0, 2, 1)[:, :, :, None]  # [m, vote, truth, 1]
            out.append(c * same + (1.0 - c) * own)
        return out

    def _e_step(self, solo_x: sparse.csr_matrix, group_x: list[sparse.csr_matrix],
                ) -> tuple[FloatArray, list[FloatArray], list[FloatArray]]:
        """(log-scores, per group P(latent | truth, votes), per group tables)."""
        k = self.priors.shape[0]
        n_j = self.confusions.shape[0]
        log_pi = np.log(np.maximum(self.confusions, _TINY)).transpose(0, 2, 1)
        z = np.asarray(solo_x @ log_pi.reshape(n_j * k, k))
        z += np.log(np.maximum(self.priors, _TINY))
        tables = self.tables()
        post = []
        for x, table, latent in zip(group_x, tables, self.latent):
            log_t = np.log(np.maximum(table, _TINY)).reshape(-1, k * k)
            log_g = np.asarray(x @ log_t).reshape(-1, k, k) + np.log(np.maximum(latent, _TINY))
            top = log_g.max(axis=2)
            lik = top + np.log(np.exp(log_g - top[:, :, None]).sum(axis=2))
            z += lik
            post.append(np.exp(log_g - lik[:, :, None]))
        return z, post, tables


def _group_design(codes: IntArray, groups: tuple[tuple[int, ...], ...], k: int,
                  ) -> tuple[sparse.csr_matrix, list[sparse.csr_matrix]]:
    """One-hot votes of the judges outside every group, and of each group's members."""
    solo_codes = codes.copy()
    for g in groups:
        solo_codes[:, list(g)] = -1
    return one_hot(solo_codes, k), [one_hot(codes[:, list(g)], k) for g in groups]


def grouped_em(
    codes: IntArray, n_labels: int, groups: tuple[tuple[int, ...], ...], init: FloatArray, *,
    gold: IntArray | None = None, n_iter: int = 100, tol: float = 1e-4, smoothing: float = 0.01,
) -> tuple[GroupedModel, FloatArray]:
    """EM for :class:`GroupedModel` from initial posteriors; returns (model, posteriors).

    Hidden per item: the truth, each group's latent and each member's copy-or-own switch. Stops
    when no parameter (confusion, copy or latent probability) moves by more than ``tol`` in an
    iteration, or after ``n_iter`` iterations.

    Raises:
        ValueError: ``smoothing`` is not a finite number > 0 (0/0 confusions: NaN posteriors)
            or ``n_iter < 1``.
    """
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise ValueError(f"smoothing must be a finite number > 0, got {smoothing}")
    n, n_j = codes.shape
    k = n_labels
    gold = np.full(n, -1) if gold is None else gold
    clamp_rows = np.flatnonzero(gold >= 0)
    t = np.array(init, dtype=np.float64)
    t[clamp_rows] = np.eye(k)[gold[clamp_rows]]
    solo_x, group_x = _group_design(codes, groups, k)
    solo_xt = solo_x.T
    # start: each group's latent is its members' majority; a vote equal to it is half a copy
    post, zeta = [], []
    for g, x in zip(groups, group_x):
        cnt = np.asarray(x @ np.tile(np.eye(k), (len(g), 1)))
        top = (cnt == cnt.max(axis=1, keepdims=True)).astype(np.float64)
        post.append(np.repeat((top / top.sum(axis=1, keepdims=True))[:, None, :], k, axis=1))
        zeta.append(np.broadcast_to(0.5 * np.eye(k)[None, :, None, :], (len(g), k, k, k)))
    model = None
    for _ in range(n_iter):
        # M-step. conf[j, truth, vote]: solo judges from T; group members from the mass of
        # their own (not copied) votes, Qv[m, vote, truth, latent] = sum_i q_i [vote_im = vote]
        conf = np.asarray(solo_xt @ t).reshape(n_j, k, k).transpose(0, 2, 1).copy()
        latent = np.zeros((len(groups), k, k))
        copy = np.zeros(n_j)
        for gi, (g, x, r, zt) in enumerate(zip(groups, group_x, post, zeta)):
            q = t[:, :, None] * r
            latent[gi] = q.sum(axis=0) + smoothing
            qv = np.asarray(x.T @ q.reshape(n, k * k)).reshape(len(g), k, k, k)
            idx = list(g)
            copy[idx] = ((qv * zt).sum(axis=(1, 2, 3)) + smoothing) / (
                qv.sum(axis=(1, 2, 3)) + 2 * smoothing)
            conf[idx] = (qv * (1.0 - zt)).sum(axis=3).transpose(0, 2, 1)
        conf += smoothing
        conf /= conf.sum(axis=2, keepdims=True)
        latent /= latent.sum(axis=2, keepdims=True)
        pri = t.sum(axis=0) + smoothing
        previous = model
        model = GroupedModel(pri / pri.sum(), conf, groups, latent, copy)
        if previous is not None and max(
            np.abs(a - b).max(initial=0.0) for a, b in zip(
                (model.confusions, model.latent, model.copy),
                (previous.confusions, previous.latent, previous.copy))) < tol:
            break
        # E-step, and the copy responsibilities zeta[m, vote, truth, latent]
        z, post, tables = model._e_step(solo_x, group_x)
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        t = e / e.sum(axis=1, keepdims=True)
        t[clamp_rows] = np.eye(k)[gold[clamp_rows]]
        same = np.eye(k)[None, :, None, :]
        zeta = [copy[list(g)][:, None, None, None] * same / np.maximum(tab, _TINY)
                for g, tab in zip(groups, tables)]
    if model is None:  # n_iter < 1: no M-step ran, there is no model
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    return model, t


# --- groups found without gold -----------------------------------------------------------------

MIN_ITEMS_PER_PARAMETER = 10.0
""":func:`search_groups` runs only with at least this many items per free parameter of the
independence model: the BIC is a large-sample approximation (the rule of thumb of ten events per
variable). LLMBar's sets are below it: the five with 130 judge columns (46 to 134 items, 0.18 to
0.51 items per parameter), where a search found 7 to 23 "groups" and lost 1 to 22 points against
plain Dawid–Skene, and the three with 16 columns (66 and 200 items, 2.0 and 6.1), where it
moved accuracy by -1.5 to +1 point. The simulated herds have 50 to 110."""

MIN_BIC_GAIN = 10.0
"""A group is added only if it lowers the BIC by at least this: "very strong" evidence on
Kass & Raftery's (1995) scale."""

MAX_SHORT_BALLOTS = 0.05
"""The grouped model has no per-item label count: the search runs only when at most this share
of the items offer fewer label positions than the panel (their decisions are read on their own
positions)."""


class GroupSearch(NamedTuple):
    """The outcome of :func:`search_groups`."""

    groups: tuple[tuple[int, ...], ...]
    """The groups taken (empty: the independence model stands, or no search ran)."""
    model: GroupedModel | None
    """The fitted model with those groups (None when no search ran)."""
    posteriors: FloatArray | None
    bic: float
    """BIC of the chosen model (nan when no search ran)."""
    bic_independent: float
    """BIC of the independence model (plain Dawid–Skene) in the same fit."""
    tried: int
    """Candidate groups considered."""
    why: str


def log_likelihood(model: GroupedModel, codes: IntArray) -> float:
    """Log-likelihood of the votes (the truth summed out) under ``model``."""
    z = model.log_scores(codes)
    top = z.max(axis=1)
    return float((top + np.log(np.exp(z - top[:, None]).sum(axis=1))).sum())


def n_parameters(model: GroupedModel) -> int:
    """Free parameters: every judge's confusions, the class priors, per group its latent table
    and its members' copy probabilities."""
    n_j, k, _ = model.confusions.shape
    return n_j * k * (k - 1) + (k - 1) + sum(k * (k - 1) + len(g) for g in model.groups)


def _candidate_groups(codes: IntArray, k: int, starts: tuple[FloatArray, ...]
                      ) -> set[tuple[int, ...]]:
    """Clusters of judges that agree more than independence allows under any of the ``starts``
    (posteriors): the nodes of an average-linkage tree over the pairwise excess z-scores in
    which every member is linked to at least half of the others."""
    from scipy.cluster.hierarchy import linkage, to_tree

    n_j = codes.shape[1]
    out: set[tuple[int, ...]] = set()
    for start in starts:
        link, zs = _links(codes, k, start, 3.0, 0.03, 10)
        if not link.any():
            continue
        upper = np.triu_indices(n_j, 1)
        stack = [to_tree(linkage((zs.max() - zs)[upper], method="average"))]
        while stack:
            node = stack.pop()
            if node.is_leaf():
                continue
            members = tuple(sorted(node.pre_order()))
            inner = link[np.ix_(members, members)].sum(axis=1)
            if inner.min() >= (len(members) - 1) / 2 and len(members) <= n_j - 2:
                out.add(members)
            stack += [node.get_left(), node.get_right()]
    return out


def _fit_with_groups(codes: IntArray, k: int, groups: tuple[tuple[int, ...], ...],
                     starts: tuple[FloatArray, ...], n_iter: int,
                     ) -> tuple[float, GroupedModel, FloatArray]:
    """(BIC, model, posteriors) of the best of EM runs from each start and from plain
    Dawid–Skene on the judges outside the groups."""
    from strategies.dawid_skene import dawid_skene_em  # dawid_skene's docs point here

    outside = codes.copy()
    for g in groups:
        outside[:, list(g)] = -1
    best: tuple[float, GroupedModel, FloatArray] | None = None
    for start in (dawid_skene_em(outside, k).posteriors, *starts):
        model, post = grouped_em(codes, k, groups, start, n_iter=n_iter)
        ll = log_likelihood(model, codes)
        if best is None or ll > best[0]:
            best = (ll, model, post)
    assert best is not None
    ll, model, post = best
    return -2.0 * ll + n_parameters(model) * np.log(codes.shape[0]), model, post


_SEARCHES: dict[tuple[Any, ...], GroupSearch] = {}
_SEARCHES_LOCK = threading.Lock()


def _frozen(search: GroupSearch) -> GroupSearch:
    """The search with its arrays read-only: a cached result is shared by every fit on the same
    ballots, so nobody may edit it in place."""
    arrays = [search.posteriors] if search.posteriors is not None else []
    if search.model is not None:
        arrays += [search.model.priors, search.model.confusions, search.model.latent,
                   search.model.copy]
    for a in arrays:
        a.flags.writeable = False
    return search


def search_groups(codes: IntArray, k: int, *, n_iter: int = 200) -> GroupSearch:
    """Correlated groups found in unlabelled ballots, by the BIC of the grouped model.

    Candidate groups are clusters of judges whose agreement exceeds independence (under vote
    shares or plain Dawid–Skene). Starting from the independence model, the candidate that
    lowers the BIC most is added, each fit started from Dawid–Skene on the judges *outside* the
    groups (inside a herd, Dawid–Skene reads the copies' agreement as competence and follows
    them; outside it, the independent judges show the truth), until no candidate lowers it by
    at least :data:`MIN_BIC_GAIN`. Runs only with :data:`MIN_ITEMS_PER_PARAMETER` items per
    parameter. The gold is not read: the result depends on the codes alone, and is cached per
    codes and settings (16 entries; its arrays are read-only, since fits share them).
    """
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    key = (hashlib.blake2b(codes.tobytes() + str(codes.shape).encode(),
                           digest_size=16).hexdigest(), k, n_iter, MIN_ITEMS_PER_PARAMETER,
           MIN_BIC_GAIN)
    with _SEARCHES_LOCK:
        hit = _SEARCHES.get(key)
    if hit is not None:
        return hit
    n, n_j = codes.shape
    per_param = n / (n_j * k * (k - 1) + k - 1)
    if per_param < MIN_ITEMS_PER_PARAMETER:
        out = GroupSearch((), None, None, float("nan"), float("nan"), 0,
                          f"no search for groups: {per_param:.2g} items per parameter of the "
                          f"independence model, fewer than {MIN_ITEMS_PER_PARAMETER:g}")
    else:
        votes = np.stack([(codes == lab).sum(axis=1) for lab in range(k)], axis=1) + 1e-9
        shares = votes / votes.sum(axis=1, keepdims=True)
        bic0, model, post = _fit_with_groups(codes, k, (), (), n_iter)
        candidates = _candidate_groups(codes, k, (shares, post))
        bic = bic0
        groups: tuple[tuple[int, ...], ...] = ()
        while True:
            used = {j for g in groups for j in g}
            trials = [(*_fit_with_groups(codes, k, (*groups, g), (post,), n_iter), g)
                      for g in sorted(candidates) if not used & set(g)]
            if not trials:
                break
            b, m_, p_, g = min(trials, key=lambda r: r[0])
            if b > bic - MIN_BIC_GAIN:
                break
            bic, model, post, groups = b, m_, p_, (*groups, g)
        why = (f"{len(groups)} correlated group(s) of {', '.join(str(len(g)) for g in groups)} "
               f"judges from {len(candidates)} candidate(s), BIC {bic:.1f} against {bic0:.1f} "
               "for independent judges" if groups else
               f"independent judges: no candidate group of {len(candidates)} lowered the BIC "
               f"({bic0:.1f}) by {MIN_BIC_GAIN:g} or more")
        out = GroupSearch(groups, model, post, bic, bic0, len(candidates), why)
    out = _frozen(out)
    with _SEARCHES_LOCK:
        while len(_SEARCHES) >= 16:
            _SEARCHES.pop(next(iter(_SEARCHES)))
        _SEARCHES[key] = out
    return out


class AnchoredGroups(NamedTuple):
    """The grouped model found without gold (:func:`search_groups`), oriented and refined by
    the gold (:func:`anchored_grouped`)."""

    model: GroupedModel
    switched: bool
    gold_right: int
    n_gold: int
    why: str

    def log_scores(self, codes: IntArray) -> FloatArray:
        return self.model.log_scores(codes)


def anchored_grouped(codes: IntArray, k: int, gold: IntArray, search: GroupSearch, *,
                     n_iter: int = 50, names: Sequence[str] | None = None) -> AnchoredGroups:
    """The searched grouped model with the gold: label-switched (binary panels) only when it is
    worse than chance on the gold with P >= ``GOLD_SWITCH_CONFIDENCE``, as
    :func:`strategies.empirical_bayes.eb_dawid_skene` does; then EM with the gold clamped,
    started from its posteriors (one model, the gold as observed data). ``names`` (of the
    judge columns) name the groups in ``why``."""
    from strategies.dawid_skene import GOLD_SWITCH_CONFIDENCE, gold_orientation

    if search.model is None or search.posteriors is None:
        raise ValueError("no grouped model was searched")
    model, post = search.model, search.posteriors
    rows = np.flatnonzero(gold >= 0)
    right, p_worse, switched = gold_orientation(model.log_scores(codes[rows]).argmax(axis=1),
                                                gold[rows], k)
    if switched:
        post = post[:, ::-1]
    if rows.size:
        model, _ = grouped_em(codes, k, search.groups, post, gold=gold, n_iter=n_iter)
    named = [[names[j] if names is not None else str(j) for j in g] for g in search.groups]
    why = (f"{search.why}: {named}; right on {right} of {rows.size} gold (P(worse than "
           f"chance) = {p_worse:.3f}" + (f" >= {GOLD_SWITCH_CONFIDENCE}: label-switched"
                                          if switched else "" if k == 2 else
                                          "; no switch tried with more than two labels")
           + ")" + (", then EM with the gold clamped" if rows.size else ""))
    return AnchoredGroups(model, bool(switched), right, int(rows.size), why)
