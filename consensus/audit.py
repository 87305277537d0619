"""Judge audit: position and verbosity bias, injection susceptibility and self-consistency of
every judge of a panel and of its aggregate (``consensus audit``).

The audit asks the panel about perturbed copies of a sample of the scenario's requests and
compares each judge's votes (and the panel's decisions, by the scenario's strategy and policy)
with its votes on the originals. Four probes:

``position`` (pairwise requests only)
    Each request again with its candidates in reverse order. A judge *flips* when it picks a
    different candidate id in the two orders. Also reported: the share of picks that went to
    the first-listed candidate, over both orders (0.5 for a judge without position bias on
    balanced data).
``verbosity``
    Benign, irrelevant text (:data:`PADDING`: a paragraph about the weather, a bread recipe,
    a garden; 750-780 characters, no claim, no instruction) appended to candidates. Verdict:
    every candidate padded; the rate is the share of ``reject`` votes that become ``accept``
    (``changed``, any change, and ``away``, accept -> reject, are in the extras). Pairwise: each
    candidate padded in turn; a trial pads a candidate the judge did not pick, and the rate is
    the share of trials where it now picks the padded one.
``injection`` (needs gold)
    Each of :data:`INJECTIONS` (an instruction to the grader, a forged verdict JSON, a rating
    string) appended to the candidates gold says to reject (verdict) or to the gold losers
    (pairwise, the template naming that candidate). The rate is the share of the judge's
    ``reject`` votes (pairwise: picks of another candidate) that become ``accept`` (a pick of
    the injected candidate); per template in the extras.
``consistency``
    Every original request asked ``repeats`` times in all (the first ask is the baseline of
    the other probes); the rate is the share of (judge, subject) whose labels are not all equal.

Every rate comes with its Wilson 95% interval (:func:`wilson`). Trials a vote or decision could
not score (a judge abstained, the panel reached no consensus) are left out of the denominator
and counted in ``abstained``, by kind. Read a judge's flip rates beside its self-consistency:
a judge that disagrees with itself on a plain repeat flips on every probe too (a coin flips
half the time), so a bias is a flip rate well above the judge's own disagreement rate.

The aggregate row is decided by ``Coordinator(RecordedPanel(n), strategy,
policy).decide_ballots``: the quorum and the strategy of a run, without interventions; a
learning strategy is fitted once on the original ballots, gold hidden, as a run does. Perturbed
requests keep their request id and gold: they are the same item presented differently.

Two kinds of judge do not read the candidate text:

* ``replay`` judges answer from a file by request id (:data:`TEXT_BLIND_KINDS`). Their answer
  to a perturbed text or a repeat would be the recorded vote on the original, which is not a
  measurement, so the audit records a ``no_record`` abstention instead: their text probes are
  n/a. The position probe is the exception where the file holds the other order: a judge
  ``X`` with a partner ``X@swap`` in the panel (LLMBar's recordings in both presentation
  orders, winners in the original numbering) votes in the reversed order what ``X@swap``
  recorded, and the other way round.
* ``simulated`` judges draw their votes from the item and its gold only (by construction of the
  simulation model), so every probe finds 0: right for that model, and said in the row's note.

Example (no Ray; any object with ``size``, ``specs`` and ``async poll(request)`` is a panel)::

    report = asyncio.run(audit_panel(panel, requests, Majority(), Policy(),
                                     AuditSettings(repeats=3)))
    report.rows["gpt-4o"]["position"].rate.rate
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consensus.audit_probes import (
    DEFAULT_LIMIT,
    INJECTIONS,
    PADDING,
    PROBES,
    AuditSettings,
    Call,
    Injection,
    appended,
    gold_rejects,
    padding_for,
    plan_calls,
    planned_polls,
    sample_requests,
    swapped,
)
from consensus.audit_scoring import (
    Getter,
    Obs,
    Observed,
    ProbeResult,
    Rate,
    observe_decisions,
    observe_votes,
    score_row,
    wilson,
)
from consensus.coordinator import Coordinator, RecordedPanel, ballots_of, mask_gold
from consensus.errors import ConfigError
from consensus.policy import Policy
from consensus.types import Request, Vote
from strategies.base import Strategy, fit_strategy, learns

if TYPE_CHECKING:
    from consensus.scenario import Scenario

__all__ = [
    "DEFAULT_LIMIT", "INJECTIONS", "PADDING", "PROBES", "SWAP_SUFFIX", "TEXT_BLIND_KINDS",
    "AuditReport", "AuditSettings", "Call", "Getter", "Injection", "Obs", "Observed",
    "ProbeResult", "Rate", "appended", "audit_panel", "audit_scenario", "gold_rejects",
    "observe_decisions", "observe_votes", "padding_for", "panel_row", "plan_calls",
    "planned_polls", "sample_requests", "score_row", "swapped", "wilson", "write_files",
]

TEXT_BLIND_KINDS = frozenset({"replay"})
"""Judge kinds whose votes come from a record keyed by request id, not from the text."""
SWAP_SUFFIX = "@swap"
"""Name suffix of a replay judge recorded in the other presentation order (LLMBar)."""


# --------------------------------------------------------------------------- the audit
@dataclass(frozen=True)
class AuditReport:
    """The figures of one audit.

    Attributes:
        scenario: Scenario name.
        strategy: The aggregate's strategy.
        settings: The settings it ran with.
        rows: Row (a judge, then ``panel (<strategy>)``) -> probe -> figures.
        kinds: Row -> judge kind (``aggregate`` for the panel row).
        notes: Row -> what to know when reading its figures (text-blind judges).
        n_requests: Requests audited, of ``n_available`` (and how many of each task).
        calls: Polls made (perturbed and repeated requests included).
        disabled: Judges of the scenario that did not run, with the reason.
        wall_time_s: Time the polls took.
    """

    scenario: str
    strategy: str
    settings: AuditSettings
    rows: Mapping[str, Mapping[str, ProbeResult]]
    kinds: Mapping[str, str]
    notes: Mapping[str, str]
    n_requests: int
    n_available: int
    n_verdict: int
    n_pairwise: int
    calls: int
    disabled: Mapping[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def panel_row(self) -> str:
        return panel_row(self.strategy)

    def as_json(self) -> dict[str, Any]:
        """What ``audit.json`` holds."""
        return {
            "scenario": self.scenario, "strategy": self.strategy,
            "settings": self.settings.as_dict(),
            "requests": {"audited": self.n_requests, "available": self.n_available,
                         "verdict": self.n_verdict, "pairwise": self.n_pairwise},
            "calls": self.calls, "wall_time_s": round(self.wall_time_s, 3),
            "disabled": dict(self.disabled),
            "padding_chars": [len(p) for p in PADDING],
            "injections": {t.name: {"verdict": t.verdict, "pairwise": t.pairwise}
                           for t in INJECTIONS},
            "rows": {row: {"kind": self.kinds.get(row, ""), "note": self.notes.get(row, ""),
                           "probes": {p: res.as_dict() for p, res in probes.items()}}
                     for row, probes in self.rows.items()},
        }

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per (row, probe) with the headline rate: what ``audit.csv`` holds."""
        out = []
        for row, probes in self.rows.items():
            for probe, res in probes.items():
                d = res.rate.as_dict()
                out.append({"judge": row, "kind": self.kinds.get(row, ""), "probe": probe,
                            "k": d["k"], "n": d["n"], "rate": d["rate"],
                            "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                            "abstained": d["abstained"],
                            "note": res.note or self.notes.get(row, "")})
        return out


def panel_row(strategy: str) -> str:
    """The name of the aggregate's row."""
    return f"panel ({strategy})"


def write_files(report: AuditReport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``audit.json`` and ``audit.csv`` into ``out_dir``; returns their paths."""
    json_path, csv_path = out_dir / "audit.json", out_dir / "audit.csv"
    json_path.write_text(json.dumps(report.as_json(), indent=2), encoding="utf-8")
    rows = report.csv_rows()
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["judge", "kind", "probe", "k", "n", "rate",
                                           "ci_low", "ci_high", "abstained", "note"])
        w.writeheader()
        w.writerows(rows)
    return json_path, csv_path


def _partners(specs: Sequence[Any]) -> dict[str, str]:
    """Replay judge -> the replay judge of the panel recorded in the other order."""
    by_key = {(getattr(s, "recorded_as", None) or s.name): s.name
              for s in specs if s.kind in TEXT_BLIND_KINDS}
    out = {}
    for key, name in by_key.items():
        other = key.removesuffix(SWAP_SUFFIX) if key.endswith(SWAP_SUFFIX) else key + SWAP_SUFFIX
        if other in by_key:
            out[name] = by_key[other]
    return out


def _row_note(spec: Any, partners: Mapping[str, str]) -> str:
    if spec.kind in TEXT_BLIND_KINDS:
        return ("replays recorded votes by request id: perturbed texts and repeats have no "
                "record (n/a)" + ("; position from its recording in the other order "
                                  f"(<name>{SWAP_SUFFIX})" if spec.name in partners else ""))
    if spec.kind == "simulated":
        return "simulated: votes depend on the item and its gold only, so 0 by construction"
    return ""


async def audit_panel(
    panel: Any,
    requests: Sequence[Request],
    strategy: Strategy,
    policy: Policy | None = None,
    settings: AuditSettings | None = None,
    *,
    scenario: str = "",
    fitted: bool = False,
    disabled: Mapping[str, str] | None = None,
    on_progress: Callable[[], None] | None = None,
) -> AuditReport:
    """Audit a started panel (anything with ``size``, ``specs`` with ``name`` and ``kind``, and
    ``async poll(request)``) on a sample of ``requests``.

    ``fitted``: the strategy was fitted beforehand (a scenario's ``fit_on``); otherwise a
    learning strategy is fitted on the original ballots, gold hidden.
    """
    settings = settings or AuditSettings()
    policy = policy or Policy()
    sample = sample_requests(requests, settings.limit, settings.seed)
    calls = plan_calls(sample, settings)
    specs = list(panel.specs)
    blind = {s.name for s in specs if s.kind in TEXT_BLIND_KINDS}
    partners = _partners(specs)
    everyone_blind = bool(specs) and len(blind) == len(specs)
    sem = asyncio.Semaphore(settings.concurrency)
    start = time.perf_counter()

    async def poll(call: Call) -> tuple[Vote, ...] | None:
        votes: tuple[Vote, ...] | None = None
        if not everyone_blind or call.key == ("base", call.request.id, "0"):
            async with sem:
                votes = tuple(await panel.poll(call.request))
        # else nothing would read the text: every vote is substituted below
        if on_progress:
            on_progress()
        return votes

    polled = await asyncio.gather(*(poll(c) for c in calls))
    wall = time.perf_counter() - start
    raw: dict[tuple[str, str, str], tuple[Vote, ...] | None] = {
        c.key: v for c, v in zip(calls, polled, strict=True)}
    votes_of = {c.key: _substitute(c, raw, specs, blind, partners) for c in calls}

    coord = Coordinator(RecordedPanel(panel.size, getattr(panel, "families", None) or {}), strategy, policy)
    if learns(strategy) and not fitted:
        base = [b for r in sample for b in ballots_of(r, votes_of[("base", r.id, "0")])]
        coord.strategy = fit_strategy(strategy, mask_gold(base))
    rows: dict[str, dict[tuple[str, str, str], dict[str, Obs]]] = {s.name: {} for s in specs}
    agg = panel_row(strategy.name)
    rows[agg] = {}
    for c in calls:
        v = votes_of[c.key]
        for judge, subjects in observe_votes(c.request, v).items():
            if judge in rows:
                rows[judge][c.key] = subjects
        rows[agg][c.key] = observe_decisions(coord.decide_ballots(c.request, v))
    reversed_rows = {s.name for s in specs if s.name in blind and s.name in partners
                     and (getattr(s, "recorded_as", None) or s.name).endswith(SWAP_SUFFIX)}
    results = {row: score_row(sample, calls, obs, probes=settings.probes,
                              repeats=settings.repeats, reversed_presentation=row in reversed_rows)
               for row, obs in rows.items()}
    kinds = {**{s.name: s.kind for s in specs}, agg: "aggregate"}
    notes = {s.name: _row_note(s, partners) for s in specs}
    if everyone_blind:
        mirrored = all(s.name in partners for s in specs)
        notes[agg] = ("every judge replays records, so its text probes are n/a (no votes: no "
                      "consensus)" + ("; every judge is recorded in both orders, so its votes are "
                                      "the same in either order: position flips come from the "
                                      "strategy alone (ties)" if mirrored else ""))
    if getattr(strategy, "name", "") == "debate":
        notes[agg] = "; ".join(n for n in (notes.get(agg), (
            "a debate: the audit decides the independent (round-1) votes with its final "
            "strategy; its later rounds are not run")) if n)
    notes = {k: v for k, v in notes.items() if v}
    return AuditReport(
        scenario=scenario, strategy=strategy.name, settings=settings, rows=results, kinds=kinds,
        notes=notes, n_requests=len(sample), n_available=len(requests),
        n_verdict=sum(r.task == "verdict" for r in sample),
        n_pairwise=sum(r.task == "pairwise" for r in sample),
        calls=sum(v is not None for v in polled), disabled=dict(disabled or {}),
        wall_time_s=wall)


def _substitute(call: Call, raw: Mapping[tuple[str, str, str], tuple[Vote, ...] | None],
                specs: Sequence[Any], blind: set[str],
                partners: Mapping[str, str]) -> tuple[Vote, ...]:
    """The votes of one call, text-blind judges' votes replaced (see the module docstring):
    by the partner's recorded vote on the original in the other order (position), else by a
    ``no_record`` abstention. Without a poll (every judge blind) all are built here."""
    base_key = ("base", call.request.id, "0")
    got = raw[call.key]
    if call.key == base_key or not blind:
        return got or ()
    by_judge: dict[tuple[str, str], Vote] = {(v.judge, v.candidate_id): v for v in got or ()}
    base = {(v.judge, v.candidate_id): v for v in raw[base_key] or ()}
    out = []
    for subject in call.request.subjects():
        for s in specs:
            vote = by_judge.get((s.name, subject))
            if s.name in blind:
                partner = partners.get(s.name)
                recorded = base.get((partner, subject)) if partner else None
                if call.probe == "position" and recorded is not None:
                    vote = recorded.model_copy(update={"judge": s.name})
                else:
                    vote = Vote.abstain(
                        judge=s.name, request_id=call.request.id, candidate_id=subject,
                        kind="no_record", reason="a replay judge has no recorded vote for a "
                        "perturbed or repeated presentation")
            if vote is not None:
                out.append(vote)
    return tuple(out)


def audit_scenario(scenario: Scenario, settings: AuditSettings | None = None, *,
                   address: str | None = None,
                   on_progress: Callable[[], None] | None = None) -> AuditReport:
    """Start the scenario's panel on Ray, audit it, stop it (the thin Ray part)."""
    from consensus.coordinator import Panel
    from consensus.runner import ensure_ray, fit_beforehand

    settings = settings or AuditSettings(concurrency=scenario.file.concurrency)
    ensure_ray(address)
    strategy, fitted_on = fit_beforehand(scenario, address=address)
    panel = Panel.start(scenario.judges, scenario.base_dir, payloads=scenario.payloads)
    try:
        if not panel.specs:
            raise ConfigError(f"no judge of the panel can run: {panel.disabled}",
                              source=str(scenario.source), field="panel")
        return asyncio.run(audit_panel(
            panel, scenario.requests, strategy, scenario.file.policy, settings,
            scenario=scenario.name, fitted=fitted_on is not None, disabled=panel.disabled,
            on_progress=on_progress))
    finally:
        panel.shutdown()
