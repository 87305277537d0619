"""One self-contained HTML report of a run: inline CSS, SVG and a few lines of script, no
network (a Content-Security-Policy forbids every load, so a viewer fetches nothing).

Sections: the headline figures; the actions; each judge's accuracy and abstention; the judge x
judge agreement heat map (Cohen's kappa, or raw agreement); the intervention breakdown by
principle; calibration curves where gold exists; the generator x judge family acceptance
matrix (cross-model validation); the competence history learned from reviews; the most
disputed items; debate convergence and categories when the run has them; and the decisions
that were not accepted, with their prompts, candidates, votes and drafts. Rendered with jinja2,
autoescaped: texts from users and models are data, never markup, and go through the redactor.

A run writes its own ``report.html`` (:func:`write_report`, from the loaded requests);
``consensus report`` draws the same page from a run folder or a store
(:func:`report_from_source`), with the store's review history.

Example:
    >>> html = render_report(RunSummary(scenario="s", strategy="majority", n_requests=0), [], {})
    >>> "<svg" in html and "majority" in html and "no gold labels" in html
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from consensus.redact import redact
from consensus.reports import analysis, charts
from consensus.reports.source import Item, Source
from consensus.reports.template import TEMPLATE
from consensus.types import Candidate, Outcome, Request, RunSummary

MAX_ROWS = 200
DISPUTED = 15


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _cards(s: RunSummary, reviews: int | None) -> list[tuple[str, str]]:
    cards = [("requests", str(s.n_requests)), ("accuracy", _pct(s.accuracy)),
             ("intervention rate", _pct(s.intervention_rate)),
             ("over-refusal rate", _pct(s.over_refusal_rate)),
             ("false-block rate", _pct(s.false_block_rate)), ("safety score", _pct(s.safety_score)),
             ("no consensus", _pct(s.no_consensus_rate)), ("Fleiss' κ", _fmt(s.fleiss_kappa)),
             ("Krippendorff's α", _fmt(s.krippendorff_alpha)),
             ("effective judges", _fmt(s.effective_judges)),
             ("latency p50", "—" if s.latency_p50_s is None else f"{1000 * s.latency_p50_s:.0f} ms"),
             ("cost", f"${s.cost_usd:.4f}")]
    if reviews is not None:
        cards.append(("human reviews", str(reviews)))
    return cards


def _agreement(s: RunSummary, outcomes: Sequence[Outcome]) -> dict[str, Any] | None:
    m = analysis.agreement_matrix(outcomes)
    if not m.judges:
        return None
    kappa = s.cohen_kappa

    def k(a: str, b: str) -> float | None:
        return 1.0 if a == b and kappa.get(a) is not None else kappa.get(a, {}).get(b)

    return {
        "kappa": charts.heatmap(
            m.judges, m.judges, k, colour=charts.blue_red,
            text=lambda a, b: "" if k(a, b) is None else f"{k(a, b):.2f}",
            title=lambda a, b: f"{a} / {b}: Cohen's κ {_fmt(k(a, b))} over {m.n[(a, b)]} "
                               "ballots", label="Cohen's kappa per pair of judges"),
        "raw": charts.heatmap(
            m.judges, m.judges, lambda a, b: m.share[(a, b)], colour=charts.green_red,
            text=lambda a, b: "" if m.share[(a, b)] is None else f"{m.share[(a, b)]:.2f}",
            title=lambda a, b: f"{a} / {b}: same label on {_fmt(m.share[(a, b)])} of "
                               f"{m.n[(a, b)]} ballots", label="raw agreement per pair"),
        "n": len(m.judges)}


def _calibration(outcomes: Sequence[Outcome], items: Mapping[str, Item]) -> dict[str, Any] | None:
    bins = analysis.calibration(outcomes, items)
    if not bins:
        return None
    return {"chart": charts.lines(
        {n: [(b.confidence, b.accuracy) for b in bs] for n, bs in bins.items()},
        sizes={n: [b.n for b in bs] for n, bs in bins.items()}, x_range=(0.0, 1.0),
        diagonal=True, label="calibration curves", x_title="stated confidence (bin mean)",
        y_title="share right (gold)"),
        "rows": [(n, sum(b.n for b in bs), analysis.expected_calibration_error(bs))
                 for n, bs in bins.items()]}


def _families(outcomes: Sequence[Outcome], items: Mapping[str, Item],
              families: Mapping[str, str | None]) -> dict[str, Any] | None:
    fm = analysis.family_matrix(outcomes, items, families)
    if not fm.generators:
        return None
    cols = [*fm.columns, *(["gold"] if any(v is not None for v in fm.gold.values()) else [])]

    def value(g: str, c: str) -> float | None:
        return fm.gold.get(g) if c == "gold" and c not in fm.columns else fm.accept.get((g, c))

    def count(g: str, c: str) -> int:
        return fm.n.get((g, c), 0)

    return {"chart": charts.heatmap(
        fm.generators, cols, value, colour=charts.green_red,
        text=lambda g, c: "" if value(g, c) is None else f"{value(g, c):.2f}",
        title=lambda g, c: (f"{g}: gold accepts {_fmt(value(g, c))}" if c == "gold" else
                            f"{g} judged by {c}: accepted {_fmt(value(g, c))} of "
                            f"{count(g, c)} votes"),
        mark=lambda g, c: (g, c) in fm.own, label="generator x judge family acceptance"),
        "own": len(fm.own)}


def _competence(history: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    if not history:
        return None
    series = analysis.competence_series(history)
    times = [t for pts in series.values() for t, _ in pts]
    lo, hi = min(times), max(times)
    ticks = [(lo + (hi - lo) * k / 4, datetime.fromtimestamp(lo + (hi - lo) * k / 4, UTC)
              .strftime("%m-%d %H:%M")) for k in range(5)] if hi > lo else [(lo, datetime
              .fromtimestamp(lo, UTC).strftime("%m-%d %H:%M"))]
    last = {name: pts[-1][1] for name, pts in series.items()}
    return {"chart": charts.lines(series, label="competence history", x_ticks=ticks,
                                  x_title="time of the review (UTC)",
                                  y_title="competence α/(α+β)"),
            "rows": [(name, len(series[name]), v) for name, v in last.items()],
            "changes": len(history)}


def render_report(
    summary: RunSummary, outcomes: Sequence[Outcome], requests: Mapping[str, Request], *,
    items: Mapping[str, Item] | None = None, families: Mapping[str, str | None] | None = None,
    competence: Sequence[Mapping[str, Any]] | None = None, reviews: int | None = None,
    origin: str = "",
) -> str:
    """The report as an HTML string.

    Args:
        summary: The run's summary.
        outcomes: Its outcomes.
        requests: Its requests by id (a run's own report), or empty with ``items``.
        items: The requests as read back from a store (replace ``requests``).
        families: Judge -> model family (cross-model validation; None: none known).
        competence: The store's competence history (None: not read; empty: no reviews).
        reviews: How many human reviews the run has (None: not read).
        origin: Where the report was drawn from, shown in its header.
    """
    s = summary
    its = dict(items) if items is not None else {k: Item.of_request(r) for k, r in
                                                 requests.items()}
    fams = dict(families or {})
    most = max(s.actions.values(), default=1)
    actions = [(a, n, max(2.0, 85.0 * n / most)) for a, n in sorted(s.actions.items())]
    judges = sorted(s.per_judge.items(), key=lambda kv: -(kv[1].accuracy or 0))
    mix = s.interventions or {}
    by_principle = mix.get("by_principle") or {}
    flagged = [o for o in outcomes if o.action != "accept"]
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["redact"] = redact  # a report is for people: keys in prompts and candidates too
    return env.from_string(TEMPLATE).render(
        s=s, cards=_cards(s, reviews), actions=actions, judges=judges, origin=origin,
        accuracy_bars=charts.bars([(n, j.accuracy, _fmt(j.accuracy)) for n, j in judges],
                                  label="accuracy per judge"),
        abstain_bars=charts.bars([(n, j.abstention_rate, _pct(j.abstention_rate))
                                  for n, j in judges], colour="#f59e0b",
                                 label="abstention per judge"),
        agreement=_agreement(s, outcomes), calibration=_calibration(outcomes, its),
        family=_families(outcomes, its, fams), competence=_competence(competence),
        competence_read=competence is not None,
        principles=charts.stacked(list(by_principle.items()), label="actions per principle")
        if by_principle else None,
        disputed=[(o, score, its.get(o.request_id)) for o, score in
                  analysis.disputed(outcomes, DISPUTED)],
        rows=[(o, its.get(o.request_id)) for o in flagged[:MAX_ROWS]],
        shown=min(MAX_ROWS, len(flagged)), total=len(flagged), fmt=_fmt, pct=_pct,
        colours=charts.ACTION_COLOURS, heat=charts.blue_red,
        mix_actions=sorted({a for row in by_principle.values() for a in row}),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), Markup=Markup,
    )


def write_report(
    path: Path, summary: RunSummary, outcomes: Sequence[Outcome], requests: Sequence[Request],
    *, families: Mapping[str, str | None] | None = None,
) -> None:
    """Write a run's own ``report.html`` (its store's review history is not read)."""
    path.write_text(render_report(summary, outcomes, {r.id: r for r in requests},
                                  families=families), encoding="utf-8")


def _requests_of(items: Mapping[str, Item], metas: Mapping[str, dict[str, Any]]) -> list[Request]:
    out = []
    for rid, it in items.items():
        meta = metas.get(rid, {})
        try:
            out.append(Request(
                id=rid, prompt=it.prompt, task="pairwise" if it.task == "pairwise" else "verdict",
                candidates=tuple(Candidate(id=c, text=t, generator=g)
                                 for c, (t, g) in it.candidates.items()),
                gold=dict(it.gold) if it.gold else None, category=it.category,
                prompt_safe=meta.get("prompt_safe")))
        except ValueError:
            continue
    return out


def report_from_source(src: Source, run_id: str | None = None) -> tuple[str, str]:
    """The report of one run of an opened run folder or store, and the run's id.

    A run without a recorded summary (still going, or killed) is summarised from the store's
    records: its figures then lack what the store does not keep (whether a candidate is a
    refusal).
    """
    from consensus.metrics import summarize

    run = src.pick_run(run_id)
    outcomes = src.store.outcomes(run.run_id)
    items = src.items(run.run_id, outcomes)
    summary = src.summary_of(run)
    if summary is None:
        metas = {o.request_id: (src.store.request_row(run.run_id, o.request_id) or {}).get(
            "meta") or {} for o in outcomes}
        requests = _requests_of(items, metas)
        judges = sorted({v.judge for o in outcomes for v in o.votes})
        summary = summarize(scenario=run.scenario, strategy=run.strategy, run_id=run.run_id,
                            requests=requests, outcomes=outcomes, judges=judges).model_copy(
            update={"status": "running", "warnings": [
                ("no summary was recorded (the run did not finish): figures recomputed from "
                "the store")]})
    history = src.store.competence_history()
    reviews = len(src.store.reviews(run.run_id))
    origin = f"{src.store.name}" + (f" (run folder {src.folder})" if src.folder else "")
    html = render_report(summary, outcomes, {}, items=items,
                         families=analysis.judge_families(run.config), competence=history,
                         reviews=reviews, origin=origin)
    return html, run.run_id
