"""The figures of the HTML report that the run summary does not hold, computed from outcomes.

* :func:`agreement_matrix`: for each pair of judges, the share of ballots both voted on where
  their labels are equal (raw agreement; the summary's Cohen's kappa is its chance-corrected
  counterpart);
* :func:`calibration`: reliability bins of each judge's stated confidence, and of the panel's
  decision probability, against gold (only where gold exists);
* :func:`family_matrix`: the share of accept votes each judge family gave the candidates of
  each generator (cross-model validation: does a family favour its own models?), beside the
  share gold accepts;
* :func:`competence_series`: the posterior mean ``alpha / (alpha + beta)`` of each judge's
  competence per label after each review;
* :func:`disputed`: the decisions the panel was most split on.

Example:
    >>> from consensus.types import Outcome, Vote
    >>> votes = (Vote(judge="a", request_id="q", candidate_id="x", label="accept"),
    ...          Vote(judge="b", request_id="q", candidate_id="x", label="reject"))
    >>> m = agreement_matrix([Outcome(request_id="q", action="block", votes=votes)])
    >>> m.judges, m.share[("a", "b")], m.n[("a", "b")]
    (['a', 'b'], 0.0, 1)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consensus.reports.source import Item
from consensus.types import ACCEPT, PAIRWISE_SUBJECT, Outcome
from judges.family import family_of

NO_FAMILY = "(no family)"


@dataclass(frozen=True)
class AgreementMatrix:
    """Raw pairwise agreement: ``share[(a, b)]`` over ``n[(a, b)]`` ballots both voted on."""

    judges: list[str]
    share: dict[tuple[str, str], float | None]
    n: dict[tuple[str, str], int]


def agreement_matrix(outcomes: Sequence[Outcome], limit: int = 40) -> AgreementMatrix:
    """Pairwise raw agreement of the judges over every ballot (the ``limit`` judges with the
    most votes)."""
    labels: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    count: dict[str, int] = defaultdict(int)
    for o in outcomes:
        for v in o.votes:
            if v.label is not None:
                labels[(o.request_id, v.candidate_id)][v.judge] = v.label
                count[v.judge] += 1
    judges = sorted(count, key=lambda j: (-count[j], j))[:limit]
    judges.sort()
    same: dict[tuple[str, str], int] = defaultdict(int)
    both: dict[tuple[str, str], int] = defaultdict(int)
    for by_judge in labels.values():
        present = [j for j in judges if j in by_judge]
        for a in present:
            for b in present:
                both[(a, b)] += 1
                same[(a, b)] += by_judge[a] == by_judge[b]
    share = {(a, b): (same[(a, b)] / both[(a, b)] if both[(a, b)] else None)
             for a in judges for b in judges}
    return AgreementMatrix(judges, share, {(a, b): both[(a, b)] for a in judges for b in judges})


@dataclass(frozen=True)
class Bin:
    """One reliability bin: stated confidence in [lo, hi), observed accuracy."""

    lo: float
    hi: float
    n: int
    confidence: float
    accuracy: float


def _bins(points: list[tuple[float, bool]], n_bins: int) -> list[Bin]:
    groups: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for conf, right in points:
        groups[min(n_bins - 1, int(conf * n_bins))].append((conf, right))
    return [Bin(lo=k / n_bins, hi=(k + 1) / n_bins, n=len(g),
                confidence=sum(c for c, _ in g) / len(g),
                accuracy=sum(r for _, r in g) / len(g))
            for k, g in sorted(groups.items())]


def calibration(outcomes: Sequence[Outcome], items: Mapping[str, Item],
                n_bins: int = 10) -> dict[str, list[Bin]]:
    """Reliability bins per judge (votes with a confidence on a subject with gold) and for the
    panel (``panel``: the decision's probability of its label); empty without gold."""
    points: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for o in outcomes:
        item = items.get(o.request_id)
        gold = item.gold if item is not None else None
        if not gold:
            continue
        for v in o.votes:
            g = gold.get(v.candidate_id)
            if g is not None and v.label is not None and v.confidence is not None:
                points[v.judge].append((v.confidence, v.label == g))
        for d in o.decisions:
            g = gold.get(d.subject)
            if g is not None and d.label is not None and d.probability is not None:
                points["panel"].append((d.probability, d.label == g))
    return {name: _bins(p, n_bins) for name, p in sorted(points.items(),
                                                         key=lambda kv: kv[0] != "panel")}


def expected_calibration_error(bins: Sequence[Bin]) -> float | None:
    """The mean |confidence - accuracy| over the bins, weighted by their counts.

    Example:
        >>> expected_calibration_error([Bin(0.9, 1.0, 10, 0.95, 0.75)])
        0.2
    """
    n = sum(b.n for b in bins)
    if not n:
        return None
    return round(sum(b.n * abs(b.confidence - b.accuracy) for b in bins) / n, 10)


def judge_families(config: Mapping[str, Any]) -> dict[str, str | None]:
    """Judge name -> model family, from a run's recorded scenario (its ``panel`` entries):
    ``family`` when set, else the family of ``model`` (llm judges), else None."""
    out: dict[str, str | None] = {}
    panel = config.get("panel")
    entries = panel.get("judges") if isinstance(panel, dict) else panel
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        family, model = entry.get("family"), entry.get("model")
        out[entry["name"]] = (family.lower() if isinstance(family, str) and family else
                              family_of(model) if isinstance(model, str) and model else None)
    return out


@dataclass(frozen=True)
class FamilyMatrix:
    """Accept share per (generator, judge column), with counts, and gold's accept share."""

    generators: list[str]
    columns: list[str]
    accept: dict[tuple[str, str], float]
    n: dict[tuple[str, str], int]
    gold: dict[str, float | None]
    own: set[tuple[str, str]]
    """Cells where the judges' family is the generator's (self-preference shows here)."""


def family_matrix(outcomes: Sequence[Outcome], items: Mapping[str, Item],
                  families: Mapping[str, str | None]) -> FamilyMatrix:
    """Generator x judge family acceptance over the verdict votes on candidates (a judge
    without a family is a column of its own, ``name (no family)``)."""
    acc: dict[tuple[str, str], int] = defaultdict(int)
    n: dict[tuple[str, str], int] = defaultdict(int)
    gold_acc: dict[str, int] = defaultdict(int)
    gold_n: dict[str, int] = defaultdict(int)
    for o in outcomes:
        item = items.get(o.request_id)
        if item is None or item.task != "verdict":
            continue
        for cid in item.candidates:
            gen = item.generator(cid) or "unknown"
            if item.gold and cid in item.gold:
                gold_n[gen] += 1
                gold_acc[gen] += item.gold[cid] == ACCEPT
        for v in o.votes:
            if v.label is None or v.candidate_id == PAIRWISE_SUBJECT:
                continue
            gen = item.generator(v.candidate_id) or "unknown"
            fam = families.get(v.judge)
            col = fam if fam else f"{v.judge} {NO_FAMILY}"
            n[(gen, col)] += 1
            acc[(gen, col)] += v.label == ACCEPT
    generators = sorted({g for g, _ in n})
    columns = sorted({c for _, c in n}, key=lambda c: (NO_FAMILY in c, c))
    own = {(g, c) for g in generators for c in columns
           if g != "unknown" and NO_FAMILY not in c and family_of(g) == c}
    return FamilyMatrix(generators, columns, {k: acc[k] / v for k, v in n.items()}, dict(n),
                        {g: (gold_acc[g] / gold_n[g] if gold_n[g] else None)
                         for g in generators}, own)


def competence_series(history: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """``judge · label`` -> [(time, posterior mean)] after each change, oldest first.

    Example:
        >>> competence_series([{"judge": "g", "label": "accept", "alpha": 3.0, "beta": 1.0,
        ...                     "at": 5.0}])
        {'g · accept': [(5.0, 0.75)]}
    """
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in history:
        a, b = float(row["alpha"]), float(row["beta"])
        if a + b > 0:
            out[f"{row['judge']} · {row['label']}"].append((float(row["at"]), a / (a + b)))
    return dict(sorted(out.items()))


def dispute(o: Outcome) -> float:
    """How split the panel was on an outcome: 1 - the smallest margin over its ballots
    (with two or more valid votes), 1 for no consensus; 0 when nothing was contested."""
    score = 0.0
    for d in o.decisions:
        a = d.agreement
        if d.label is None and a is not None and a.n_valid:
            score = max(score, 1.0)
        elif a is not None and a.n_valid >= 2:
            score = max(score, 1.0 - a.margin)
    return score


def disputed(outcomes: Sequence[Outcome], k: int = 15) -> list[tuple[Outcome, float]]:
    """The ``k`` most disputed outcomes, most split first (uncontested ones left out)."""
    scored = [(o, dispute(o)) for o in outcomes]
    scored = [(o, s) for o, s in scored if s > 0]
    scored.sort(key=lambda os: -os[1])
    return scored[:k]
