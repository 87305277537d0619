"""A/B experiments: strategies (or whole scenarios) side by side on the same votes.

The panel is polled once per scenario; strategies are pure, so each contender re-decides the
recorded votes. Contenders that learn from gold are scored honestly: over ``splits`` random
splits, gold is visible on a ``gold_fraction`` of the requests and every contender is scored on
the rest. Each request's paired prediction comes from the first split that held it out, so every
figure below is computed on predictions made without that request's gold, and every contender
(learning or not) is scored on the same requests: those that at least one split held out.

* accuracy with a bootstrap 95% interval (``scipy.stats.bootstrap``), balanced accuracy,
  block precision/recall (``reject`` is the positive class; an undecided ballot counts as
  blocked, as the default policy fails closed), Brier score (multi-class, Brier 1950: twice the
  binary score for two labels) and expected calibration error
  (10 equal-width bins), the mean and spread of accuracy across splits;
* request-level safety figures (intervention rate, over-refusal rate, safety score) and cost;
* an exact McNemar test (``scipy.stats.binomtest`` on the discordant pairs) of every contender
  against the first one, on the ballots both scored.

Example:
    >>> mcnemar_exact([True, True, False, True], [False, False, False, True])
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from consensus.coordinator import Coordinator, RecordedPanel, ballots_of, mask_gold
from consensus.metrics import summarize
from consensus.policy import Policy
from consensus.stats import run_stats
from consensus.types import (
    ACCEPT,
    REJECT,
    Ballot,
    Decision,
    Deliberation,
    Outcome,
    Request,
    RunStats,
    RunSummary,
    Vote,
)
from strategies.base import Strategy, fit_strategy, learns

N_BINS = 10


@dataclass(frozen=True)
class Polled:
    """A panel's votes on a scenario, ready to be re-decided by any strategy."""

    scenario: str
    requests: tuple[Request, ...]
    votes: dict[str, tuple[Vote, ...]]
    latency_s: dict[str, float]
    panel_size: int
    judges: tuple[str, ...]
    deliberations: dict[str, Deliberation] = field(default_factory=dict)
    """Request id -> the debate that produced ``votes`` (a debate's final rounds)."""
    families: dict[str, str | None] = field(default_factory=dict)
    """Judge name -> model family (``min_families`` on replay)."""
    debated: tuple[Polled, ...] = ()
    """The same requests debated, one per debate asked of :func:`consensus.runner.poll_scenario`."""


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: a strategy (and policy) applied to a polled scenario."""

    label: str
    polled: Polled
    strategy: Strategy
    policy: Policy = field(default_factory=Policy)

    @property
    def learns(self) -> bool:
        return learns(self.strategy)


@dataclass
class Result:
    """The figures of one contender."""

    label: str
    summary: RunSummary
    n_scored: int
    accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    balanced_accuracy: float | None
    block_precision: float | None
    block_recall: float | None
    brier: float | None
    ece: float | None
    split_accuracy_mean: float | None
    split_accuracy_sd: float | None
    mcnemar_p: float | None = None
    calls_per_request: float | None = None
    fitted: dict[str, Any] = field(default_factory=dict)
    correct: dict[tuple[str, str], bool] = field(default_factory=dict, repr=False)

    def row(self) -> dict[str, Any]:
        """Flat figures for tables, CSV and JSON."""
        s = self.summary
        ci = self.accuracy_ci or (None, None)
        return {
            "contender": self.label, "strategy": s.strategy, "scenario": s.scenario,
            "n_scored": self.n_scored, "accuracy": self.accuracy, "accuracy_ci_low": ci[0],
            "accuracy_ci_high": ci[1], "balanced_accuracy": self.balanced_accuracy,
            "block_precision": self.block_precision, "block_recall": self.block_recall,
            "over_refusal_rate": s.over_refusal_rate, "false_block_rate": s.false_block_rate,
            "intervention_rate": s.intervention_rate,
            "safety_score": s.safety_score, "no_consensus_rate": s.no_consensus_rate,
            "brier": self.brier, "ece": self.ece, "split_accuracy_mean": self.split_accuracy_mean,
            "split_accuracy_sd": self.split_accuracy_sd, "fleiss_kappa": s.fleiss_kappa,
            "krippendorff_alpha": s.krippendorff_alpha, "cost_usd": s.cost_usd,
            "mcnemar_p_vs_first": self.mcnemar_p, "calls_per_request": self.calls_per_request,
        }


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value of paired correctness vectors (1.0: no discordance)."""
    x, y = np.asarray(a, bool), np.asarray(b, bool)
    n01, n10 = int(np.sum(x & ~y)), int(np.sum(~x & y))
    if n01 + n10 == 0:
        return 1.0
    return float(sps.binomtest(min(n01, n10), n01 + n10, 0.5).pvalue)


def _conclude(c: Contender, strategy: Strategy, targets: Sequence[Request]) -> dict[str, Outcome]:
    coord = Coordinator(RecordedPanel(c.polled.panel_size, c.polled.families), strategy,
                        c.policy)
    votes, latency, debates = c.polled.votes, c.polled.latency_s, c.polled.deliberations
    return {r.id: coord.conclude(r, votes[r.id], latency[r.id], debates.get(r.id))
            for r in targets}


def calls_of(outcome: Outcome) -> int:
    """Judge calls an outcome cost: every round of a debate, else the votes not recused
    without a call."""
    if outcome.deliberation is not None:
        return outcome.deliberation.calls
    return sum(1 for v in outcome.votes if not v.recused)


def by_category(polled: Polled) -> dict[str, Polled]:
    """``polled`` cut by request category (requests without one go under ``"-"``), in order of
    first appearance: each part is compared on its own, learners fitted within it."""
    parts: dict[str, list[Request]] = {}
    for r in polled.requests:
        parts.setdefault(r.category or "-", []).append(r)
    return {cat: replace(polled, scenario=f"{polled.scenario}[{cat}]", requests=tuple(reqs),
                         votes={r.id: polled.votes[r.id] for r in reqs},
                         latency_s={r.id: polled.latency_s[r.id] for r in reqs})
            for cat, reqs in parts.items()}


def compare(
    contenders: Sequence[Contender], *, gold_fraction: float = 0.2, splits: int = 10,
    seed: int = 0,
) -> list[Result]:
    """Score every contender (see the module docstring); the first is the McNemar baseline.

    Contenders that do not learn decide every request once; their per-split accuracies are
    read off those outcomes on the same held-out sets as the learners'.
    """
    has_gold = any(r.gold for c in contenders for r in c.polled.requests)
    learning = has_gold and any(c.learns for c in contenders) and gold_fraction > 0
    n_splits = splits if learning else 1
    per: list[dict[str, Outcome]] = [{} for _ in contenders]
    split_acc: list[list[float]] = [[] for _ in contenders]
    fitted: list[Strategy] = [c.strategy for c in contenders]
    ballots: dict[int, list[Ballot]] = {}  # per polled scenario, built once
    for i, c in enumerate(contenders):
        polled = c.polled
        if c.learns:
            key = id(polled)
            if key not in ballots:
                ballots[key] = [b for r in polled.requests
                                for b in ballots_of(r, polled.votes[r.id])]
        else:
            per[i] = _conclude(c, c.strategy, polled.requests)
        ids = [r.id for r in polled.requests]
        n_gold = round(gold_fraction * len(ids)) if learning else 0
        # The permutation depends on (seed, split) only: contenders over the same requests
        # see the same gold in the same split, so their predictions pair up.
        shown = [_visible(ids, n_gold, seed, k) for k in range(n_splits)]
        for k, visible in enumerate(shown):
            held = [r for r in polled.requests if r.id not in visible]
            if c.learns:
                fitted[i] = fit_strategy(c.strategy, mask_gold(ballots[id(polled)], visible))
                outs = _conclude(c, fitted[i], held)
                for rid, o in outs.items():
                    per[i].setdefault(rid, o)
            else:
                outs = per[i]
            split_acc[i].append(_accuracy_of(held, outs))
        # score on the requests some split held out, the same ones for every contender
        held_once = set(ids) - set(ids).intersection(*shown)
        per[i] = {r.id: per[i][r.id] for r in polled.requests if r.id in held_once}
    # the panel's agreement depends on the votes only: once per scenario and scored set
    panels: dict[tuple[int, frozenset[str]], RunStats] = {}
    for i, c in enumerate(contenders):
        panel_key = (id(c.polled), frozenset(per[i]))
        if panel_key not in panels:
            reqs = [r for r in c.polled.requests if r.id in per[i]]
            panels[panel_key] = run_stats([b for r in reqs
                                     for b in ballots_of(r, c.polled.votes[r.id])])
    results = [_result(c, per[i], split_acc[i], fitted[i],
                       panels[(id(c.polled), frozenset(per[i]))])
               for i, c in enumerate(contenders)]
    base = results[0]
    for r in results[1:]:
        common = sorted(set(base.correct) & set(r.correct))
        if common:
            r.mcnemar_p = mcnemar_exact([base.correct[k] for k in common],
                                        [r.correct[k] for k in common])
    return results


def _visible(ids: list[str], n_gold: int, seed: int, split: int) -> set[str]:
    """The requests whose gold split ``split`` shows: a function of (seed, split) only."""
    perm = np.random.default_rng((seed, split)).permutation(len(ids))
    return {ids[j] for j in perm[:n_gold]}


def _accuracy_of(reqs: Sequence[Request], outs: dict[str, Outcome]) -> float:
    hits = [d.label == r.gold[d.subject] for r in reqs if r.gold
            for d in outs[r.id].decisions if d.subject in r.gold]
    return float(np.mean(hits)) if hits else float("nan")


def _result(
    c: Contender, outs: dict[str, Outcome], split_acc: list[float], fitted_strategy: Strategy,
    panel: RunStats,
) -> Result:
    reqs = [r for r in c.polled.requests if r.id in outs]
    outcomes = [outs[r.id] for r in reqs]
    summary = summarize(scenario=c.polled.scenario, strategy=c.strategy.name, run_id=c.label,
                        requests=reqs, outcomes=outcomes, judges=c.polled.judges,
                        panel_stats=panel)
    scored: list[tuple[Decision, str]] = [
        (d, r.gold[d.subject]) for r in reqs if r.gold for d in outs[r.id].decisions
        if d.subject in r.gold
    ]
    correct = {(d.request_id, d.subject): d.label == g for d, g in scored}
    hits = np.array(list(correct.values()), dtype=float)
    acc = float(hits.mean()) if len(hits) else None
    ci: tuple[float, float] | None = None
    if len(hits) > 1 and 0 < hits.sum() < len(hits):
        res = sps.bootstrap((hits,), np.mean, confidence_level=0.95, n_resamples=2000,
                            method="percentile", random_state=0)
        ci = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    elif acc is not None:  # one item, or all hits or all misses: the interval is the point
        ci = (acc, acc)
    finite = [a for a in split_acc if np.isfinite(a)]
    # Learned attributes (crowd-kit convention: trailing underscore) of the last fit.
    fitted = {k: v for k, v in vars(fitted_strategy).items()
              if k.endswith("_") and not k.startswith("_")} \
        if hasattr(fitted_strategy, "__dict__") else {}
    return Result(
        label=c.label, summary=summary, n_scored=len(hits), accuracy=acc, accuracy_ci=ci,
        balanced_accuracy=_balanced(scored), block_precision=_block(scored, "precision"),
        block_recall=_block(scored, "recall"), brier=_brier(scored), ece=_ece(scored),
        split_accuracy_mean=float(np.mean(finite)) if finite else None,
        split_accuracy_sd=float(np.std(finite)) if len(finite) > 1 else None,
        fitted=fitted, correct=correct,
        calls_per_request=(sum(calls_of(o) for o in outcomes) / len(outcomes)
                           if outcomes else None),
    )


def _balanced(scored: list[tuple[Decision, str]]) -> float | None:
    classes = sorted({g for _, g in scored})
    recalls = [np.mean([d.label == g for d, g in scored if g == k]) for k in classes]
    return float(np.mean(recalls)) if recalls else None


def _block(scored: list[tuple[Decision, str]], which: str) -> float | None:
    verdicts = [(d.label != ACCEPT, g == REJECT) for d, g in scored if g in (ACCEPT, REJECT)]
    if not verdicts:
        return None
    tp = sum(p and t for p, t in verdicts)
    denom = sum(p for p, _ in verdicts) if which == "precision" else sum(t for _, t in verdicts)
    return tp / denom if denom else None


def _brier(scored: list[tuple[Decision, str]]) -> float | None:
    """Brier's (1950) multi-class score: mean of ``sum_k (p_k - [k = gold])^2``, in [0, 2]
    (twice the usual binary score for two labels). An undecided ballot without probabilities
    counts as uniform over its labels."""
    if not scored:
        return None
    out = []
    for d, g in scored:
        p: dict[str | None, float] = {lab: q for lab, q in d.probabilities.items()}
        if not p:
            shares = d.agreement.shares if d.agreement is not None else {}
            labels: list[str | None] = [*shares] or [g, None]  # unknown label space: two labels
            p = {lab: 1.0 / len(labels) for lab in labels}
        out.append(sum((p.get(lab, 0.0) - (lab == g)) ** 2 for lab in {*p, g}))
    return float(np.mean(out))


def _ece(scored: list[tuple[Decision, str]]) -> float | None:
    pairs = [(d.probability, d.label == g) for d, g in scored
             if d.label is not None and d.probability is not None]
    if not pairs:
        return None
    conf = np.array([p for p, _ in pairs])
    hit = np.array([h for _, h in pairs], dtype=float)
    bins = np.minimum((conf * N_BINS).astype(int), N_BINS - 1)
    ece = 0.0
    for b in range(N_BINS):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return float(ece)
