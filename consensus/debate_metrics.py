"""Convergence of a debate over a run: ``summary.json`` -> ``debate``.

Per round (round 1 is the independent poll), over every debated request:

* ``accuracy``: the final strategy's decisions on that round's votes, against gold;
* ``krippendorff_alpha`` and ``effective_judges`` of that round's votes (herding shows as alpha
  rises while the effective number of judges falls and accuracy does not move);
* ``changed``: votes whose label changed in the round; ``wrong_to_right`` / ``right_to_wrong``:
  those changes judged against gold;
* ``calls``, ``tokens``, ``cost_usd``, ``latency_s`` (mean per request), ``masked``
  (self-identifying mentions masked in shared critiques), ``unanimous`` (share of ballots).

A debate that stopped early keeps its last votes in the later rounds' figures (its ballots are
unanimous or stable, so they would not change), so every round covers the same ballots; its
calls count only in the rounds it ran.

Besides the rounds: the stop reasons, the decisions whose final label differs from round 1's
(``fixed``: wrong to right, ``broken``: right to wrong), the calls against round 1's
(``extra_calls``: what the debate cost beyond an ordinary poll), and ``lone_right``: ballots
where exactly one judge was right in round 1 while the round-1 decision was wrong: how often that
judge kept its answer (``kept``) or lost it (``lost``: herding against a shared misconception).

Example:
    >>> debate_summary([], [])
    {}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from consensus import stats
from consensus.types import Ballot, DebateRound, Outcome, Request, finite_or_none


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def debate_summary(requests: Sequence[Request], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The ``debate`` section of a run summary ({} when nothing was debated)."""
    by_id = {r.id: r for r in requests}
    debated = [(by_id[o.request_id], o) for o in outcomes
               if o.deliberation is not None and o.request_id in by_id]
    if not debated:
        return {}
    n_rounds = max(len(o.deliberation.rounds) for _, o in debated if o.deliberation)
    per_round: list[dict[str, Any]] = []
    for k in range(n_rounds):
        ballots: list[Ballot] = []
        correct = scored = changed = w2r = r2w = calls = masked = unanimous = n_ballots = 0
        tokens: list[int] = []
        cost = latency = 0.0
        for r, o in debated:
            assert o.deliberation is not None
            rounds = o.deliberation.rounds
            rec = rounds[min(k, len(rounds) - 1)]
            ran = k < len(rounds)
            for subject in r.subjects():
                ballots.append(Ballot.for_subject(
                    r, subject, tuple(v for v in rec.votes if v.candidate_id == subject)))
                n_ballots += 1
                unanimous += bool(rec.unanimous.get(subject))
                gold = (r.gold or {}).get(subject)
                if gold is not None:
                    scored += 1
                    correct += rec.labels.get(subject) == gold
            if ran and k > 0:
                changed += rec.changed
                a, b = _flips(rounds[k - 1], rec, r)
                w2r, r2w = w2r + a, r2w + b
            if ran:
                calls += rec.calls
                masked += rec.masked
                cost += rec.cost_usd
                latency += rec.latency_s
                if rec.tokens is not None:
                    tokens.append(rec.tokens)
        matrix = stats.label_matrix(ballots)
        per_round.append({
            "round": k + 1,
            "accuracy": _rate(correct, scored),
            "krippendorff_alpha": finite_or_none(
                stats.krippendorff_alpha(matrix.codes, matrix.n_labels)),
            "effective_judges": finite_or_none(stats.effective_judges(matrix.codes)),
            "changed": changed, "wrong_to_right": w2r, "right_to_wrong": r2w,
            "calls": calls, "tokens": sum(tokens) if tokens else None, "cost_usd": cost,
            "latency_s": latency / len(debated), "masked": masked,
            "unanimous": _rate(unanimous, n_ballots),
        })
    fixed = broken = flipped = 0
    kept = lost = 0
    for r, o in debated:
        assert o.deliberation is not None
        first, last = o.deliberation.rounds[0], o.deliberation.rounds[-1]
        for subject in r.subjects():
            gold = (r.gold or {}).get(subject)
            before, after = first.labels.get(subject), last.labels.get(subject)
            if before != after:
                flipped += 1
                fixed += gold is not None and after == gold
                broken += gold is not None and before == gold
            if gold is None or before == gold:
                continue
            right = [v.judge for v in first.votes if v.candidate_id == subject and v.label == gold]
            if len(right) == 1:
                final = {v.judge: v.label for v in last.votes if v.candidate_id == subject}
                kept += final.get(right[0]) == gold
                lost += final.get(right[0]) != gold
    calls_total = sum(o.deliberation.calls for _, o in debated if o.deliberation)
    calls_first = sum(o.deliberation.rounds[0].calls for _, o in debated if o.deliberation)
    return {
        "n_requests": len(debated),
        "rounds": per_round,
        "stop_reasons": dict(Counter(o.deliberation.stop_reason for _, o in debated
                                     if o.deliberation)),
        "flipped_from_round1": {"n": flipped, "fixed": fixed, "broken": broken},
        "calls": {"total": calls_total, "round1": calls_first,
                  "extra_calls": calls_total - calls_first,
                  "per_request": calls_total / len(debated)},
        "lone_right": {"kept": kept, "lost": lost},
    }


def _flips(before: DebateRound, after: DebateRound, request: Request) -> tuple[int, int]:
    """(wrong -> right, right -> wrong) vote changes between two rounds, against gold."""
    gold = request.gold or {}
    prev = {(v.judge, v.candidate_id): v.label for v in before.votes}
    w2r = r2w = 0
    for v in after.votes:
        g = gold.get(v.candidate_id)
        old = prev.get((v.judge, v.candidate_id))
        if g is None or old == v.label:
            continue
        w2r += v.label == g
        r2w += old == g
    return w2r, r2w


def debate_warnings(section: dict[str, Any]) -> list[str]:
    """A warning when a debate raised agreement without raising accuracy (herding)."""
    rounds = section.get("rounds") or []
    if len(rounds) < 2:
        return []
    first, last = rounds[0], rounds[-1]
    a0, a1 = first.get("accuracy"), last.get("accuracy")
    k0, k1 = first.get("krippendorff_alpha"), last.get("krippendorff_alpha")
    if None in (a0, a1, k0, k1) or not (k1 - k0 >= 0.2 and a1 - a0 < 0.005):
        return []
    lost = section.get("lone_right", {}).get("lost", 0)
    message = (f"debate raised agreement (alpha {k0:.2f} -> {k1:.2f}) but not accuracy "
               f"({a0:.3f} -> {a1:.3f}): the judges herded; {lost} lone right answer(s) lost")
    return [message]
