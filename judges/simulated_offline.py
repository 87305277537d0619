"""Simulated panels in process: the ballots ``consensus compare`` collects through Ray, without Ray.

A simulated judge's draws are pure functions of (seed, judge, request, subject) (see
:mod:`judges.simulated`), so calling the same judges here gives the votes the Ray hosts return,
latency aside. Benchmarks and tests use this to score strategies on thousands of simulated items
in seconds, against the exact Bayes posterior of the same model.

Example:
    >>> from consensus.datasets import SimulatedDataset
    >>> specs = [SimulatedJudgeSpec(name="lead", default_accuracy=0.6),
    ...          SimulatedJudgeSpec(name="echo", correlated_with="lead", copy_prob=1.0)]
    >>> requests = SimulatedDataset(n_items=50, seed=1).generate()
    >>> truth, codes = simulate_codes(specs, requests)
    >>> bool((codes[:, 0] == codes[:, 1]).all())  # the echo always copies its leader
    True
    >>> b = simulate_ballots(specs, requests)[0]
    >>> [v.judge for v in b.votes], b.gold == requests[0].gold["a"]
    (['lead', 'echo'], True)
    >>> post = bayes_posteriors(specs, {"accept": 0.5, "reject": 0.5}, codes,
    ...                         ("accept", "reject"))
    >>> post.shape
    (50, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from consensus.types import Ballot, Request, Vote
from judges.base import JudgeSpecBase
from judges.simulated import (
    SimulatedJudge,
    SimulatedJudgeSpec,
    panel_posterior,
    resolve_correlations,
    simulate_label,
)

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


def simulated_only(specs: Sequence[JudgeSpecBase]) -> list[SimulatedJudgeSpec]:
    """``specs`` as simulated judge specs (e.g. a loaded scenario's ``judges``).

    Raises:
        ValueError: a judge of another kind.
    """
    out = [s for s in specs if isinstance(s, SimulatedJudgeSpec)]
    if len(out) != len(specs):
        raise ValueError("every judge of an offline panel must be a simulated judge")
    return out


def resolved(specs: Sequence[JudgeSpecBase]) -> list[SimulatedJudgeSpec]:
    """``specs`` with ``correlated_with`` names replaced by the named specs (idempotent).

    Raises:
        ValueError: a non-simulated judge, an unknown parent, or a correlation cycle.
    """
    return simulated_only(resolve_correlations(simulated_only(specs)))


def reseed(specs: Sequence[JudgeSpecBase], offset: int) -> list[SimulatedJudgeSpec]:
    """The same panel with every judge's seed shifted by ``offset``: a fresh, independent draw.

    Copied parents are shifted too, so a copying judge still replays its parent's vote.

    Example:
        >>> s = reseed([SimulatedJudgeSpec(name="a", seed=1),
        ...             SimulatedJudgeSpec(name="b", seed=2, correlated_with="a", copy_prob=0.5)],
        ...            10)
        >>> [x.seed for x in s], s[1].correlated_with.seed
        ([11, 12], 11)
    """
    flat = [s.model_copy(update={
        "seed": s.seed + offset,
        "correlated_with": (s.correlated_with.name
                            if isinstance(s.correlated_with, SimulatedJudgeSpec)
                            else s.correlated_with)})
        for s in simulated_only(specs)]
    return resolved(flat)


def simulate_votes(judges: Sequence[SimulatedJudge], request: Request) -> tuple[Vote, ...]:
    """Every judge's vote on every subject of ``request``, in the order ``Panel.poll`` uses."""
    candidates = [None] if request.task == "pairwise" else list(request.candidates)
    return tuple(j.vote(request, c) for c in candidates for j in judges)


def simulate_ballots(specs: Sequence[JudgeSpecBase],
                     requests: Sequence[Request]) -> list[Ballot]:
    """The ballots of ``requests`` (one per subject), with the votes a Ray run would collect.

    Args:
        specs: The panel, in panel order (``correlated_with`` as names or resolved specs).
        requests: E.g. :meth:`consensus.datasets.SimulatedDataset.generate`.
    """
    judges = [SimulatedJudge(s) for s in resolved(specs)]
    out: list[Ballot] = []
    for r in requests:
        votes = simulate_votes(judges, r)
        out.extend(Ballot.for_subject(r, subj, tuple(v for v in votes if v.candidate_id == subj))
                   for subj in r.subjects())
    return out


def simulate_codes(specs: Sequence[JudgeSpecBase],
                   requests: Sequence[Request]) -> tuple[IntArray, IntArray]:
    """Gold and votes as label positions, without building votes (fast).

    Each request must have one subject and the label space of the first request.

    Returns:
        ``truth`` (``n``, position of the gold label in ``requests[0].labels()``, ``-1`` if
        none) and ``codes`` (``n x n_judges`` in panel order, ``-1`` = abstention).
    """
    panel = resolved(specs)
    labels = requests[0].labels() if requests else ()
    pos = {lab: k for k, lab in enumerate(labels)}
    truth = np.full(len(requests), -1, dtype=np.int64)
    codes = np.full((len(requests), len(panel)), -1, dtype=np.int64)
    for i, r in enumerate(requests):
        subjects = r.subjects()
        if len(subjects) != 1 or r.labels() != labels:
            raise ValueError(f"request {r.id!r}: one subject and labels {labels} expected")
        truth[i] = pos.get((r.gold or {}).get(subjects[0], ""), -1)
        for j, s in enumerate(panel):
            label = simulate_label(s, r, subjects[0])
            if label is not None:
                codes[i, j] = pos[label]
    return truth, codes


def bayes_posteriors(specs: Sequence[JudgeSpecBase], prior: Mapping[str, float],
                     codes: IntArray, labels: Sequence[str]) -> FloatArray:
    """Exact ``P(gold | votes)`` for each row of ``codes`` (:func:`panel_posterior`).

    Computed once per distinct vote pattern, so large panels of items stay cheap.

    Args:
        specs: The panel, in the column order of ``codes``.
        prior: P(gold label), as in the simulated dataset.
        codes: ``n x n_judges`` label positions, ``-1`` = abstention.
        labels: The label of each position.

    Returns:
        ``n x len(labels)`` posteriors, columns in the order of ``labels``.
    """
    panel = resolved(specs)
    by_name = {s.name: s for s in panel}
    codes = np.asarray(codes, dtype=np.int64)
    patterns, inverse = np.unique(codes, axis=0, return_inverse=True)
    post = np.empty((len(patterns), len(labels)))
    for p, row in enumerate(patterns):
        votes = {s.name: (labels[c] if c >= 0 else None) for s, c in zip(panel, row, strict=True)}
        q = panel_posterior(by_name, votes, labels, prior)
        post[p] = [q[lab] for lab in labels]
    return post[inverse.reshape(-1)]
