"""Dawid–Skene with correlated groups: judges that share a blind spot (same base model, same
misleading cue) agree more than independence allows, and an independence model then counts
their shared mistakes as independent evidence.

:func:`find_groups` links judges whose agreement exceeds what their confusions predict;
:func:`grouped_em` fits a model where each group has a latent answer its members copy with a
learned probability, else vote on their own (:class:`GroupedModel`). ``strategies.calibrated``
uses it as one member of its stack.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from strategies._matrix import FloatArray, IntArray, one_hot

_TINY = 1e-300


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
    link = (both >= min_overlap) & (zs > z) & (o - e > min_excess)
    np.fill_diagonal(link, False)
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
