"""``consensus constitution diff OLD NEW --on SCENARIO_OR_RUN``: what a constitution change does.

The requests are decided twice, once with the rules judges reading OLD and once reading NEW;
every other vote is the same on both sides, so any difference comes from the constitution. Both
sides go through the scenario's (or run's) strategy and policy with
:meth:`~consensus.coordinator.Coordinator.run` (quorum, strategy, fitting of a learning strategy
on the side's own ballots, policy), in-process: the rules judge needs no Ray.

* ``--on SCENARIO``: the scenario's panel runs in-process (:class:`~judges.actor.JudgeHostImpl`);
  judges other than the swapped rules judges vote once and their votes serve both sides. LLM
  judges also read principle texts: they vote once with the texts the scenario gives them, and
  the report says so. Judges whose environment variables are missing are left out, as in a run.
* ``--on RUN_DIR``: the run's recorded votes (``decisions.jsonl``, else the store) are replayed
  unchanged, LLM votes included, and only the swapped rules judges vote again, under OLD and
  under NEW. The texts of the requests are not recorded with a run: they come from the run's
  scenario (``scenario=``, default ``scenarios/<name>.yaml`` of the current directory).

The swapped judges are the rules judges whose constitution file is OLD, or those named.

A decision flips when its action, delivered candidate or a ballot's label differs. Each flip
names the principles whose hits appeared (``+``), disappeared (``-``) or whose severity or
intervention changed (``~``) in the swapped judges' votes on that request; per principle the
report counts the flips it takes part in, the requests newly withheld and newly delivered, and
the requests it hits before and after. The before/after figures are those of ``summary.json``
(:func:`consensus.metrics.summarize`).

Example (in-process, a few seconds)::

    report = diff_constitutions(Path("old.yaml"), Path("new.yaml"),
                                on=Path("scenarios/safety_smoke.yaml"))
    print(len(report.flips), report.before["safety_score"], report.after["safety_score"])
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from consensus.constitution import Constitution, load_constitution
from consensus.errors import ConfigError
from consensus.files import read_text
from consensus.scenario import Scenario, load_scenario
from consensus.types import Outcome, Request, Vote

_NO_CAUSE = "(none: the rules votes changed otherwise, e.g. a timeout)"
FIGURES = ("accuracy", "safety_score", "over_refusal_rate", "false_block_rate",
           "intervention_rate", "no_consensus_rate")
"""The run figures compared (``summary.json`` keys)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Flip(_Frozen):
    """One request whose decision differs under NEW."""

    request_id: str = Field(description="Request id.")
    category: str | None = Field(default=None, description="The request's category.")
    before: str = Field(description="Action under OLD (with the delivered candidate).")
    after: str = Field(description="Action under NEW (with the delivered candidate).")
    labels_before: dict[str, str | None] = Field(description="Ballot subject -> label (OLD).")
    labels_after: dict[str, str | None] = Field(description="Ballot subject -> label (NEW).")
    gold: dict[str, str] | None = Field(default=None, description="Gold labels, if any.")
    principles: list[str] = Field(description="Causes: +id hits appeared, -id disappeared, "
                                  "~id severity or intervention changed.")


class PrincipleEffect(_Frozen):
    """What one principle's change did across the requests."""

    principle: str = Field(description="Principle id.")
    flips: int = Field(description="Flips it takes part in.")
    newly_withheld: int = Field(description="Flips from delivered to withheld.")
    newly_delivered: int = Field(description="Flips from withheld to delivered.")
    hits_before: int = Field(description="Requests it hits under OLD.")
    hits_after: int = Field(description="Requests it hits under NEW.")


class DiffReport(_Frozen):
    """The result of :func:`diff_constitutions` (``--json`` prints it)."""

    old: str
    new: str
    on: str
    mode: str = Field(description="scenario or run.")
    n_requests: int
    rerun: list[str] = Field(description="Rules judges that voted under OLD and under NEW.")
    replayed: list[str] = Field(description="Judges whose votes serve both sides unchanged.")
    principles_added: list[str]
    principles_removed: list[str]
    principles_changed: list[str]
    flips: list[Flip]
    per_principle: list[PrincipleEffect]
    before: dict[str, float | None] = Field(description="Run figures under OLD.")
    after: dict[str, float | None] = Field(description="Run figures under NEW.")
    notes: list[str]


def diff_constitutions(old: Path, new: Path, on: Path, *, judges: Sequence[str] = (),
                       scenario: Path | None = None, limit: int | None = None) -> DiffReport:
    """Decide the requests of ``on`` under OLD and under NEW and compare (module docstring)."""
    old_c, new_c = load_constitution(old), load_constitution(new)
    if on.is_dir():
        sc, recorded, notes = _run_inputs(on, scenario)
    else:
        sc, recorded, notes = load_scenario(on), None, []
    if limit is not None:
        sc = sc.limited(limit)
    swap = _swapped(sc, old, judges)
    enabled = [j.name for j in sc.judges if not j.missing_env()]
    if recorded is None:
        requests = list(sc.requests)
        names = enabled
        notes += [f"judge {j.name} left out: missing {', '.join(j.missing_env())}"
                  for j in sc.judges if j.missing_env()]
        shared: Shared = {}
        mode = "scenario"
    else:
        requests = [r for r in sc.requests if r.id in recorded]
        missing = sorted(set(recorded) - {r.id for r in requests})
        if missing and limit is None:
            raise ConfigError(f"{len(missing)} recorded request(s) are not in the scenario's "
                              f"dataset (e.g. {missing[0]!r})", source=str(on),
                              field="--scenario")
        names = list(dict.fromkeys(v.judge for o in recorded.values() for v in o.votes))
        absent = [n for n in swap if n not in names]
        if absent:
            raise ConfigError(f"judge {absent[0]!r} has no recorded vote in this run",
                              source=str(on), field="--judge")
        shared = _recorded_votes(requests, recorded, [n for n in names if n not in swap])
        mode = "run"
    fixed_names = [n for n in names if n not in swap]
    fixed = _Fixed(sc, fixed_names, replay=recorded is not None)
    llm = [j.name for j in sc.judges if j.name in fixed_names and bool(getattr(j, "principles", ()))]
    if llm:
        notes.append(f"LLM judge(s) {', '.join(llm)} read principle texts: their votes "
                     + ("are replayed from the run" if recorded is not None else
                        "are computed once, with the texts the scenario gives them,")
                     + " and used unchanged under NEW")
    before = _decide(sc, requests, swap, old_c, _LocalPanel(names, _rules(sc, swap, old_c),
                                                            fixed, shared))
    misses_before = fixed.misses
    after = _decide(sc, requests, swap, new_c, _LocalPanel(names, _rules(sc, swap, new_c),
                                                           fixed, shared))
    if recorded is not None:
        differ = sum(_gist(o) != _gist(recorded[o.request_id]) for o in before)
        if differ:
            notes.append(f"{differ} recorded decision(s) differ from a re-run under OLD (the run "
                         "used another constitution or strategy, or a check timed out): the "
                         "comparison uses the re-run")
        if fixed.misses:
            notes.append(f"{fixed.misses} draft(s) not recorded in the run were judged here by "
                         "the other judges that can run in-process (the rest abstain)")
    elif fixed.misses > misses_before:
        notes.append(f"{fixed.misses - misses_before} draft(s) written only under NEW were "
                     "judged by the other judges too")
    return _report(old, new, on, mode, sc, requests, swap, fixed_names, old_c, new_c, before,
                   after, notes)


def _gist(o: Outcome) -> object:
    return o.action, o.accepted_candidate, tuple(d.label for d in o.decisions)


# --- inputs ---------------------------------------------------------------------------------

def _swapped(sc: Scenario, old: Path, names: Sequence[str]) -> list[str]:
    from judges.rules import RulesJudgeSpec

    rules = [j for j in sc.judges if isinstance(j, RulesJudgeSpec)]
    if names:
        unknown = sorted(set(names) - {j.name for j in rules})
        if unknown:
            raise ConfigError(f"{unknown[0]!r} is not a rules judge of {sc.source} (rules judges: "
                              f"{', '.join(j.name for j in rules) or 'none'})", field="--judge")
        return list(names)
    target = old.resolve()
    found = [j.name for j in rules if _resolve(j.constitution, sc.base_dir) == target]
    if not found:
        raise ConfigError(f"no rules judge of {sc.source} reads {old} (rules judges: "
                          f"{', '.join(f'{j.name} ({j.constitution})' for j in rules) or 'none'})"
                          "; name the ones to re-run with --judge", field="OLD")
    return found


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return (p if p.is_absolute() else base / p).resolve()


def _run_inputs(run: Path, scenario: Path | None
                ) -> tuple[Scenario, dict[str, Outcome], list[str]]:
    """The scenario and the recorded outcomes (by request id) of a run folder."""
    src = str(run)
    summary = json.loads(read_text(run / "summary.json", what="run summary")) \
        if (run / "summary.json").is_file() else {}
    outcomes = _recorded(run)
    if not outcomes:
        raise ConfigError("no recorded decision (decisions.jsonl or consensus.sqlite)",
                          source=src)
    name = summary.get("scenario")
    if scenario is None:
        guess = Path("scenarios") / f"{name}.yaml"
        if not name or not guess.is_file():
            raise ConfigError("a run does not record the texts of its requests: name its "
                              "scenario with --scenario", source=src, field="--scenario")
        scenario = guess
    strategy = summary.get("strategy")
    sc = load_scenario(scenario)
    if strategy and strategy != sc.strategy.name:
        sc = load_scenario(scenario, strategy=strategy)
    notes = [f"requests from {scenario}; votes replayed from {run}"]
    if summary.get("status") not in (None, "complete"):
        notes.append(f"the run's status is {summary.get('status')!r}: only its "
                     f"{len(outcomes)} recorded decisions are compared")
    return sc, {o.request_id: o for o in outcomes}, notes


def _recorded(run: Path) -> list[Outcome]:
    jsonl = run / "decisions.jsonl"
    if jsonl.is_file():
        out = []
        for n, line in enumerate(read_text(jsonl, what="decision log").splitlines(), 1):
            if line.strip():
                try:
                    out.append(Outcome.model_validate_json(line))
                except ValueError as exc:
                    raise ConfigError(f"line {n}: not a recorded outcome ({str(exc)[:200]})",
                                      source=str(jsonl)) from None
        return out
    if (run / "consensus.sqlite").is_file():
        from consensus.store import Store

        store = Store(run / "consensus.sqlite")
        try:
            row = store.conn.execute(
                "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
            return store.outcomes(row[0]) if row else []
        finally:
            store.close()
    return []


# --- votes ---------------------------------------------------------------------------------

Key = tuple[str, str, tuple[tuple[str, str], ...]]
Shared = dict[Key, dict[tuple[str, str], Vote]]


def _key(request: Request) -> Key:
    return request.id, request.prompt, tuple((c.id, c.text) for c in request.candidates)


class _LocalPanel:
    """The panel in-process, for one side: its rules judges vote on every poll; the other
    judges' votes are shared by both sides (``shared``, keyed by request id and texts, so a
    draft both sides write alike is judged once), computed on a miss by ``fixed``."""

    def __init__(self, names: Sequence[str], rules: Mapping[str, Any], fixed: _Fixed,
                 shared: Shared):
        self.names = list(names)
        self.size = len(self.names)
        self.rules, self.fixed, self.shared = rules, fixed, shared

    async def poll(self, request: Request, version: str | None = None) -> tuple[Vote, ...]:
        key = _key(request)
        if key not in self.shared:
            self.shared[key] = await self.fixed.votes(request)
        targets = [None] if request.task == "pairwise" else list(request.candidates)
        calls = [(name, c) for name in self.rules for c in targets]
        fresh = await asyncio.gather(*(self.rules[n].judge(request, c) for n, c in calls))
        return _ordered(request, self.names, {**self.shared[key],
                                              **{(v.judge, v.candidate_id): v for v in fresh}})


class _Fixed:
    """The judges that are not re-run, built in-process on first use."""

    def __init__(self, sc: Scenario, names: Sequence[str], *, replay: bool):
        self.sc, self.names, self.replay = sc, list(names), replay
        self.host: Any = None
        self.misses = 0
        self._lock = asyncio.Lock()

    async def votes(self, request: Request) -> dict[tuple[str, str], Vote]:
        if not self.names:
            return {}
        self.misses += 1
        async with self._lock:
            if self.host is None:
                self.host = await asyncio.to_thread(self._build)
        specs = {j.name: j for j in self.sc.judges}
        runnable = [n for n in self.names if n in specs and not specs[n].missing_env()]
        targets = [None] if request.task == "pairwise" else [c.id for c in request.candidates]
        out: dict[tuple[str, str], Vote] = {}
        if runnable:
            for v in await self.host.judge_batch(request, [(n, t) for t in targets
                                                           for n in runnable]):
                out[(v.judge, v.candidate_id)] = v
        for n in self.names:
            for t in targets:
                subject = t if t is not None else "*"
                if (n, subject) not in out:
                    out[(n, subject)] = Vote.abstain(
                        judge=n, request_id=request.id, candidate_id=subject, kind="no_record",
                        reason="not recorded in the run and cannot run here")
        return out

    def _build(self) -> Any:
        from judges.actor import JudgeHostImpl
        from judges.registry import prepare

        specs = [j for j in self.sc.judges if j.name in self.names and not j.missing_env()]
        cache: dict[Any, Any] = {}
        return JudgeHostImpl([(j, self.sc.payloads[j.name] if j.name in self.sc.payloads
                               else prepare(j, self.sc.base_dir, cache)) for j in specs])


def _ordered(request: Request, names: Sequence[str], votes: Mapping[tuple[str, str], Vote]
             ) -> tuple[Vote, ...]:
    """Votes in panel order, as :meth:`~consensus.coordinator.Panel.poll` gives them."""
    subjects = ["*"] if request.task == "pairwise" else [c.id for c in request.candidates]
    return tuple(votes[(n, s)] for s in subjects for n in names if (n, s) in votes)


def _rules(sc: Scenario, swap: Sequence[str], c: Constitution) -> dict[str, Any]:
    from judges.rules import RulesJudge

    specs = {j.name: j for j in sc.judges}
    return {name: RulesJudge(specs[name], c) for name in swap}  # type: ignore[arg-type]


def _recorded_votes(requests: Sequence[Request], recorded: Mapping[str, Outcome],
                    fixed: Sequence[str]) -> Shared:
    """The fixed judges' recorded votes on each request and each recorded draft."""
    from consensus.types import Candidate

    shared: Shared = {}
    keep = set(fixed)
    for r in requests:
        o = recorded[r.id]
        if o.votes:
            shared[_key(r)] = {(v.judge, v.candidate_id): v for v in o.votes if v.judge in keep}
        for d in o.drafts:
            if d.text is not None and d.votes:
                sub = Request(id=f"{r.id}/{d.id}", prompt=r.prompt,
                              candidates=(Candidate(id=d.id, text=d.text),))
                shared[_key(sub)] = {(v.judge, v.candidate_id): v for v in d.votes
                                     if v.judge in keep}
    return shared


# --- deciding and comparing -----------------------------------------------------------------

def _decide(sc: Scenario, requests: Sequence[Request], swap: Sequence[str], c: Constitution,
            panel: _LocalPanel) -> list[Outcome]:
    """A run of the side: the scenario with the swapped judges reading ``c``."""
    from consensus.coordinator import Coordinator
    from consensus.runner import interventions_for

    side = dataclasses.replace(sc, payloads={**sc.payloads, **dict.fromkeys(swap, c)})
    coord = Coordinator(panel, copy.deepcopy(sc.strategy), sc.file.policy,
                        interventions=interventions_for(side))
    return asyncio.run(coord.run(requests, concurrency=max(1, sc.file.concurrency)))


def _figures(sc: Scenario, requests: Sequence[Request], outcomes: Sequence[Outcome],
             judges: Sequence[str]) -> dict[str, float | None]:
    from consensus.metrics import summarize

    s = summarize(scenario=sc.name, strategy=sc.strategy.name, run_id="", requests=requests,
                  outcomes=outcomes, judges=judges)
    return {k: getattr(s, k) for k in FIGURES}


def _hits(o: Outcome, swap: Sequence[str]) -> dict[str, set[tuple[object, object]]]:
    """Principle -> (severity, intervention) of its hits on the request: the swapped judges'
    votes and the input screening."""
    out: dict[str, set[tuple[object, object]]] = {}
    found = [x for v in o.votes if v.judge in swap for x in v.violations] + list(o.screening)
    for x in found:
        out.setdefault(x.principle, set()).add((x.severity, x.intervention))
    return out


def _shown(o: Outcome) -> str:
    return o.action + (f" {o.accepted_candidate}" if o.accepted_candidate else "")


def _report(old: Path, new: Path, on: Path, mode: str, sc: Scenario, requests: list[Request],
            swap: list[str], fixed: list[str], old_c: Constitution, new_c: Constitution,
            before: list[Outcome], after: list[Outcome], notes: list[str]) -> DiffReport:
    flips: list[Flip] = []
    effects: dict[str, dict[str, int]] = {}

    def effect(pid: str) -> dict[str, int]:
        return effects.setdefault(pid, dict.fromkeys(
            ("flips", "newly_withheld", "newly_delivered", "hits_before", "hits_after"), 0))

    for r, b, a in zip(requests, before, after, strict=True):
        hb, ha = _hits(b, swap), _hits(a, swap)
        for pid in hb:
            effect(pid)["hits_before"] += 1
        for pid in ha:
            effect(pid)["hits_after"] += 1
        lb = {d.subject: d.label for d in b.decisions}
        la = {d.subject: d.label for d in a.decisions}
        if (b.action, b.accepted_candidate, lb) == (a.action, a.accepted_candidate, la):
            continue
        causes = sorted([f"+{p}" for p in set(ha) - set(hb)] + [f"-{p}" for p in set(hb) - set(ha)]
                        + [f"~{p}" for p in set(ha) & set(hb) if ha[p] != hb[p]],
                        key=lambda c: (c[1:], c))
        for c in causes:
            e = effect(c[1:])
            e["flips"] += 1
            e["newly_withheld"] += b.delivered and not a.delivered
            e["newly_delivered"] += a.delivered and not b.delivered
        flips.append(Flip(request_id=r.id, category=r.category, before=_shown(b),
                          after=_shown(a), labels_before=lb, labels_after=la, gold=r.gold,
                          principles=causes or [_NO_CAUSE]))
    old_p = {p.id: p for p in old_c.principles}
    new_p = {p.id: p for p in new_c.principles}
    judges = [*fixed, *swap]
    return DiffReport(
        old=str(old), new=str(new), on=str(on), mode=mode, n_requests=len(requests), rerun=swap,
        replayed=fixed, principles_added=[p for p in new_p if p not in old_p],
        principles_removed=[p for p in old_p if p not in new_p],
        principles_changed=[p for p in old_p if p in new_p and old_p[p] != new_p[p]],
        flips=flips,
        per_principle=[PrincipleEffect(principle=p, **e) for p, e in sorted(
            effects.items(), key=lambda kv: (-kv[1]["flips"], kv[0]))],
        before=_figures(sc, requests, before, judges), after=_figures(sc, requests, after, judges),
        notes=notes,
    )
