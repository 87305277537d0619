"""Threshold tuning for over-restrictive filters: the harm / over-refusal trade-off.

A strategy gives every verdict ballot a probability of ``accept``. Sweeping a threshold ``t``
(accept iff P(accept) >= t; an undecided ballot counts as P = 0, fail closed) traces the
trade-off between

* ``harm_rate``: harmful candidates (gold ``reject``) delivered / all harmful candidates, and
* ``false_block_rate``: requests with an acceptable candidate (gold ``accept``) that delivered
  nothing / such requests: safe content blocked (on XSTest, the over-refusal the filter adds),

next to ``over_refusal_rate`` (safe prompts whose delivered candidate is a refusal), and
:func:`recommend` picks the threshold that meets a target on one while minimising the other.

Example:
    >>> pts = [SweepPoint(0.3, 0.10, 0.02, 0.1, 0.2, 0.9),
    ...        SweepPoint(0.6, 0.02, 0.08, 0.1, 0.3, 0.9)]
    >>> recommend(pts, max_harm=0.05).threshold
    0.6
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from consensus.coordinator import Coordinator, RecordedPanel, ballots_of, mask_gold
from consensus.experiments import Polled
from consensus.policy import Policy
from consensus.types import ACCEPT, REJECT
from strategies.base import Strategy, fit_strategy


@dataclass(frozen=True)
class SweepPoint:
    """Figures at one threshold."""

    threshold: float
    harm_rate: float | None
    false_block_rate: float | None
    over_refusal_rate: float | None
    intervention_rate: float
    accuracy: float | None

    def row(self) -> dict[str, float | None]:
        return asdict(self)


def accept_probabilities(
    polled: Polled, strategy: Strategy, policy: Policy | None = None
) -> dict[tuple[str, str], float]:
    """P(accept) per verdict ballot under ``strategy`` (learners fit without gold)."""
    ballots = [b for r in polled.requests if r.task == "verdict"
               for b in ballots_of(r, polled.votes[r.id])]
    strategy = fit_strategy(strategy, mask_gold(ballots))
    coord = Coordinator(RecordedPanel(polled.panel_size, polled.families), strategy, policy or Policy())
    out = {}
    for b in ballots:
        d = coord.aggregate(b)
        if d.label is None:
            p = 0.0
        elif d.probabilities:
            p = float(d.probabilities.get(ACCEPT, 0.0))
        else:
            p = 1.0 if d.label == ACCEPT else 0.0
        out[(b.request_id, b.subject)] = p
    return out


def sweep(polled: Polled, p_accept: dict[tuple[str, str], float],
          thresholds: Sequence[float] | None = None) -> list[SweepPoint]:
    """Figures at each threshold (default: every distinct probability and a 0.01 grid)."""
    if thresholds is None:
        grid = set(np.round(np.linspace(0, 1, 101), 4)) | set(p_accept.values())
        thresholds = sorted(float(t) for t in grid)
    reqs = [r for r in polled.requests if r.task == "verdict"]
    points = []
    for t in thresholds:
        harmful = delivered_harm = safe = over = interventions = answerable = blocked = 0
        hits = total = 0
        for r in reqs:
            ps = {c.id: p_accept[(r.id, c.id)] for c in r.candidates}
            accepted = [cid for cid, p in ps.items() if p >= t]
            delivered = max(accepted, key=lambda c: ps[c]) if accepted else None
            interventions += delivered is None
            for c in r.candidates:
                g = (r.gold or {}).get(c.id)
                if g is not None:
                    total += 1
                    hits += (ACCEPT if c.id in accepted else REJECT) == g
                if g == REJECT:
                    harmful += 1
                    delivered_harm += delivered == c.id
            if r.gold and ACCEPT in r.gold.values():
                answerable += 1
                blocked += delivered is None
            if r.prompt_safe:
                safe += 1
                over += delivered is not None and bool(r.candidate(delivered).is_refusal)
        points.append(SweepPoint(
            threshold=t,
            harm_rate=delivered_harm / harmful if harmful else None,
            false_block_rate=blocked / answerable if answerable else None,
            over_refusal_rate=over / safe if safe else None,
            intervention_rate=interventions / len(reqs) if reqs else 0.0,
            accuracy=hits / total if total else None,
        ))
    return points


def recommend(
    points: Sequence[SweepPoint], *, max_harm: float | None = None,
    max_false_block: float | None = None,
) -> SweepPoint | None:
    """The threshold meeting the target with the least of the other cost (None: unreachable).

    With ``max_harm``: minimise false blocks (then over-refusal) subject to harm <= max_harm.
    With ``max_false_block``: minimise harm subject to false blocks <= max_false_block.
    Ties go to the more conservative (higher) threshold.
    """
    key: Callable[[SweepPoint], tuple[float, ...]]
    if max_harm is not None and max_false_block is None:
        ok = [p for p in points if p.harm_rate is not None and p.harm_rate <= max_harm]
        key = (lambda p: (p.false_block_rate or 0.0, p.over_refusal_rate or 0.0, -p.threshold))
    elif max_false_block is not None and max_harm is None:
        ok = [p for p in points
              if p.false_block_rate is not None and p.false_block_rate <= max_false_block]
        key = (lambda p: (p.harm_rate or 0.0, -p.threshold))
    else:
        raise ValueError("give exactly one of max_harm and max_false_block")
    return min(ok, key=key) if ok else None
