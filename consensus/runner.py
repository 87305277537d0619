"""Run a scenario on Ray: start the panel, decide every request, record, summarise.

Every decision is written to the store (for ``consensus run``, by default ``consensus.sqlite``
in the user's data directory) with its votes, request and drafts, and to ``decisions.jsonl``, as soon as it is made
(one transaction each), so an interrupted run keeps what it decided, and ``resume`` continues it
without deciding a committed request again (docs/store.md). The output folder is
locked for the run (:class:`~consensus.reports.files.RunFolder`). At the end (or when the run is
interrupted, with status ``interrupted``) the run writes
``summary.json``, ``decisions.csv``, ``votes.csv`` and ``report.html`` (see :mod:`consensus.reports.files`).

Example (needs Ray)::

    result = run_scenario(load_scenario("scenarios/safety_smoke.yaml"), Path("out"))
    print(result.summary.accuracy)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
import structlog

from consensus.competence import wants_reviews
from consensus.constitution import Constitution, load_constitution
from consensus.coordinator import Coordinator, Panel, ballots_of
from consensus.deliberation import run_debate
from consensus.errors import ConfigError
from consensus.experiments import Polled
from consensus.generator import Generator, GeneratorSpec
from consensus.interventions import EscalationHook, InputScreen, Interventions
from consensus.metrics import summarize
from consensus.policy import Policy
from consensus.reload import ConstitutionWatcher
from consensus.reports.files import (
    DecisionLog,
    RunFolder,
    write_decisions_csv,
    write_summary,
    write_votes_csv,
)
from consensus.reports.html import write_report
from consensus.scenario import Scenario, load_scenario, scenario_warnings
from consensus.store import DuplicateDecision, Store, open_store
from consensus.types import Deliberation, Outcome, Request, RunStatus, RunSummary, Vote
from strategies.base import Strategy, fit_strategy, learns
from strategies.debate import Debate

log = structlog.get_logger("consensus.runner")


@dataclass(frozen=True)
class RunResult:
    """What a run produced."""

    run_id: str
    out_dir: Path
    summary: RunSummary
    outcomes: list[Outcome]
    store: str = ""
    """Where the decisions are (the store's name: a path, or a DSN without its password)."""


def ensure_ray(address: str | None = None) -> None:
    """Start (or join, with ``address``) a Ray cluster once per process.

    A cluster that cannot be joined is a ConfigError naming the address, not Ray's traceback.
    """
    if ray.is_initialized():
        return
    if address and address not in ("auto", "local"):
        _probe(address)
    quiet_ray()
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=True, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot start or join {where}: {detail}", field="--address") from None


def _probe(address: str) -> None:
    """Fail at once when nothing listens at ``host:port`` (Ray itself retries for minutes)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address is 'auto' or host:port, got {address!r}",
                          field="--address")
    try:
        with socket.create_connection((host, int(port)), timeout=5.0):
            pass
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address}: {exc.strerror or exc}",
                          field="--address") from None


def quiet_ray() -> None:
    """Silence Ray's start-up noise for CLI users (its errors still surface).

    * usage statistics: off, and so no prompt about them;
    * "token authentication is enabled for this Ray cluster": Ray's default for a local
      cluster, which this CLI keeps (a token in ``~/.ray/auth_token``); the notice says nothing
      a user must act on, so its logger is raised to errors. ``RAY_AUTH_MODE`` still works as
      Ray documents it;
    * deprecation notices that ray's own modules raise as Python warnings.
    """
    import warnings

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray(\..*)?$")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray(\..*)?$")


def run_scenario(
    scenario: Scenario,
    out_dir: Path,
    *,
    address: str | None = None,
    store_path: str | Path | None = None,
    on_progress: Callable[[Request, Outcome], None] | None = None,
    concurrency: int | None = None,
    resume: str | None = None,
    on_start: Callable[[RunStart], None] | None = None,
) -> RunResult:
    """Run ``scenario`` and write the output directory contract into ``out_dir``.

    The folder is locked for the run and emptied of an earlier run's files first; the store
    (``store_path``; by default ``out_dir/consensus.sqlite``, while ``consensus run`` defaults to
    :func:`~consensus.store.default_store_path`, the user's data directory) is opened before Ray
    starts, so a bad ``--out`` or ``--store`` fails at once. Once the panel is up,
    ``summary.json`` says ``running`` until the end; a run stopped early (Ctrl-C, an error)
    still writes its summary, CSVs and report for the requests it decided, with status
    ``interrupted``.

    With ``resume`` (``"latest"``: the latest unfinished run of the scenario in the store, or a
    run id) the run continues under its run id: the requests it committed are not decided
    again (:meth:`~consensus.store.Store.decided_ids`), and at the end every output file is
    written from the store, so it equals an uninterrupted run's. ``on_start`` hears the run id,
    the store and how many requests are left, before Ray starts.

    Raises:
        ConfigError: nothing to resume (no unfinished run of the scenario, an unknown or
            complete run id), the scenario changed since that run started (its files, dataset,
            strategy or ``--limit``), or a strategy fitted on the run's own ballots (its fit
            would differ on the rest).
    """
    strategy_name = scenario.strategy.name
    fingerprint = scenario_fingerprint(scenario)
    store = open_store(store_path or out_dir / "consensus.sqlite")
    try:
        if resume is None:
            run_id = f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            decided: set[str] = set()
        else:  # refused before the folder is touched: a refusal removes no file
            run_id = resumable_run(store, scenario, resume, fingerprint)
            decided = store.decided_ids(run_id)
        todo = [r for r in scenario.requests if r.id not in decided]
        with RunFolder(out_dir, inputs=scenario.input_files()) as folder:
            folder.claim(run_id)
            structlog.contextvars.bind_contextvars(run_id=run_id)
            ensure_ray(address)  # first: a bad --address is the only thing its error says
            if on_start:
                on_start(RunStart(run_id, store.name, len(todo), len(decided)))
            strategy, fitted_on = fit_beforehand(scenario, address=address)
            if resume is None:
                store.start_run(run_id, scenario=scenario.name, strategy=strategy_name,
                                config=scenario.file.model_dump(mode="json"),
                                fingerprint=fingerprint)
            else:
                store.reopen_run(run_id)
            start = time.perf_counter()
            outcomes: list[Outcome] = store.outcomes(run_id) if decided else []
            status: RunStatus = "interrupted"
            panel = Panel.start(scenario.judges, scenario.base_dir, payloads=scenario.payloads)
            if not panel.specs:
                panel.shutdown()
                raise ConfigError(f"no judge of the panel can run: {panel.disabled}",
                                  source=str(scenario.source), field="panel")
            try:
                for warning in scenario_warnings(scenario):
                    log.warning("scenario_warning", warning=warning)
                short = scenario.file.policy.check_panel(panel.size)
                if short:
                    log.warning("quorum_unreachable", reason=short, disabled=panel.disabled)
                coord = Coordinator(panel, strategy, scenario.file.policy,
                                    refit=fitted_on is None, run_id=run_id,
                                    interventions=interventions_for(scenario),
                                    watcher=watcher_for(scenario),
                                    # from_reviews: the reviews in this store set competences
                                    competences=store if wants_reviews(strategy) else None)
                write_summary(out_dir / "summary.json", RunSummary(
                    scenario=scenario.name, strategy=strategy_name, run_id=run_id,
                    n_requests=len(outcomes), status="running"))
                with DecisionLog(out_dir / "decisions.jsonl") as jsonl:
                    for earlier in outcomes:  # a resumed run's file starts with what it kept
                        jsonl.write(earlier)

                    def record(req: Request, outcome: Outcome) -> None:
                        try:
                            store.record(run_id, outcome, request=req)
                        except DuplicateDecision:  # committed by another process meanwhile
                            log.warning("decided_elsewhere", request_id=req.id)
                            return
                        jsonl.write(outcome)
                        outcomes.append(outcome)
                        if on_progress:
                            on_progress(req, outcome)

                    log.info("run_start", scenario=scenario.name, strategy=strategy_name,
                             n_requests=len(todo), resumed=len(decided), judges=len(panel.specs))
                    asyncio.run(coord.run(
                        todo, concurrency=concurrency or scenario.file.concurrency,
                        on_outcome=record,
                    ))
                status = "complete"
            finally:
                panel.shutdown()
                if decided:  # what the store holds, in its order: as an uninterrupted run's
                    outcomes = store.outcomes(run_id)
                    rewrite_decisions(out_dir / "decisions.jsonl", outcomes)
                summary = summarize(
                    scenario=scenario.name, strategy=strategy_name, run_id=run_id,
                    requests=scenario.requests, outcomes=outcomes,
                    judges=[j.name for j in panel.specs],
                    wall_time_s=time.perf_counter() - start, disabled=panel.disabled,
                ).model_copy(update={"fitted_on": fitted_on, "status": status})
                store.finish_run(run_id, summary)
                write_outputs(out_dir, summary, outcomes, scenario.requests)
    finally:
        store.close()
    log.info("run_done", accuracy=summary.accuracy, wall_time_s=round(summary.wall_time_s, 2))
    return RunResult(run_id, out_dir, summary, outcomes, store.name)


@dataclass(frozen=True)
class RunStart:
    """What a run knows once Ray is up, before its panel starts (for the CLI to print)."""

    run_id: str
    store: str
    """The store as messages show it (a path; a DSN without its password)."""
    todo: int
    """Requests to decide."""
    resumed: int
    """Requests an earlier attempt of this run committed (0 for a new run)."""


def scenario_fingerprint(scenario: Scenario) -> str:
    """A digest of everything that decides a run's outcomes: the scenario file as loaded, the
    strategy, the requests (dataset, ``--limit``) and the bytes of every input file. A resumed
    run must have the same."""
    h = hashlib.sha256()
    h.update(json.dumps(scenario.file.model_dump(mode="json"), sort_keys=True,
                        default=str).encode())
    h.update(scenario.strategy.name.encode())
    for r in scenario.requests:
        h.update(r.model_dump_json().encode())
    for path in sorted(scenario.input_files()):
        h.update(str(path.name).encode())
        try:
            h.update(path.read_bytes())
        except OSError:  # loading read it; a file gone since then changes the digest
            h.update(b"\0missing")
    return h.hexdigest()


def resumable_run(store: Store, scenario: Scenario, resume: str, fingerprint: str) -> str:
    """The run ``--resume`` continues: ``resume`` is ``"latest"`` (the latest unfinished run of
    the scenario) or a run id. Refuses (ConfigError, field ``--resume``) when there is none,
    it is complete or of another scenario, the scenario changed, or the strategy is fitted on
    the run's own ballots."""
    where = f"in the store {store.name}"
    if resume == "latest":
        runs = [r for r in store.runs(scenario=scenario.name) if r["status"] != "complete"]
        if not runs:
            raise ConfigError(f"nothing to resume: no unfinished run of scenario "
                              f"{scenario.name!r} {where}", field="--resume")
        run = runs[0]
    else:
        found = store.run(resume)
        if found is None:
            raise ConfigError(f"nothing to resume: no run {resume!r} {where}", field="--resume")
        run = found
        if run["scenario"] != scenario.name:
            raise ConfigError(f"run {resume!r} is of scenario {run['scenario']!r}, not "
                              f"{scenario.name!r}", field="--resume")
        if run["status"] == "complete":
            raise ConfigError(f"nothing to resume: run {resume!r} is complete",
                              field="--resume")
    if run["fingerprint"] != fingerprint:
        raise ConfigError(
            f"the scenario changed since run {run['run_id']} started (its YAML, dataset, "
            "constitutions or record files, --strategy or --limit), so its decisions would not "
            "match the rest; start a new run without --resume", source=str(scenario.source),
            field="--resume")
    if scenario.fit_source() is None and learns(scenario.strategy):
        raise ConfigError(
            f"strategy {scenario.strategy.name!r} is fitted on the ballots of the whole run; a "
            "resumed run would fit on the rest only and decide differently; start a new run "
            "(or fit it beforehand with fit_on)", source=str(scenario.source), field="--resume")
    return str(run["run_id"])


def rewrite_decisions(path: Path, outcomes: Sequence[Outcome]) -> None:
    """Write decisions.jsonl anew (through a temporary file, replaced in one step)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with DecisionLog(tmp) as jsonl:
        for o in outcomes:
            jsonl.write(o)
    os.replace(tmp, path)


def watcher_for(scenario: Scenario) -> ConstitutionWatcher:
    """A watcher of the scenario's constitution files (what hot reload looks at)."""
    by_name = {name: payload for name, payload in scenario.payloads.items()
               if isinstance(payload, Constitution)}
    current = {path: by_name[name] for name, path in scenario.constitution_files.items()
               if name in by_name}
    for path in scenario.constitution_files.values():  # LLM-only constitution files
        if path not in current:
            current[path] = load_constitution(path)
    return ConstitutionWatcher(scenario.constitution_files, current)


def interventions_for(scenario: Scenario,
                      on_escalate: EscalationHook | None = None, *,
                      policy: Policy | None = None,
                      generator: GeneratorSpec | None = None) -> Interventions:
    """The scenario's generator, principle texts and input screen, ready for a coordinator
    (``policy`` replaces the scenario's; ``generator`` serves when the scenario has none, as
    the service's upstream does)."""
    spec = scenario.file.generator or generator
    return Interventions(policy or scenario.file.policy,
                         generator=Generator(spec) if spec is not None else None,
                         principles=scenario.principle_texts(),
                         screen=InputScreen(scenario.constitutions()),
                         on_escalate=on_escalate)


def write_outputs(out_dir: Path, summary: RunSummary, outcomes: Sequence[Outcome],
                  requests: Sequence[Request]) -> None:
    """The run's files beside decisions.jsonl: summary, decision and vote CSVs, the report."""
    write_summary(out_dir / "summary.json", summary)
    write_decisions_csv(out_dir / "decisions.csv", outcomes)
    write_votes_csv(out_dir / "votes.csv", outcomes)
    write_report(out_dir / "report.html", summary, outcomes, requests)


def fit_beforehand(
    scenario: Scenario, *, address: str | None = None
) -> tuple[Strategy, str | None]:
    """Fit the scenario's learning strategy on its ``fit_on`` scenario, votes and gold.

    Returns the strategy to run and a description of the fit (None when nothing was fitted:
    no ``fit_on``, or a strategy that does not learn, which is logged).
    """
    source = scenario.fit_source()
    strategy = scenario.strategy
    if source is None:
        return strategy, None
    if not learns(strategy):
        log.warning("fit_on_ignored", strategy=strategy.name, reason="strategy does not learn")
        return strategy, None
    labelled = load_scenario(source)
    if not any(r.gold for r in labelled.requests):
        raise ConfigError(f"{source} has no gold labels to fit on", source=str(scenario.source),
                          field="fit_on")
    polled = poll_scenario(labelled, address=address)
    ballots = [b for r in polled.requests for b in ballots_of(r, polled.votes[r.id])]
    n_gold = sum(b.gold is not None for b in ballots)
    unknown = sorted({j.name for j in scenario.judges} - set(polled.judges))
    fitted = fit_strategy(strategy, ballots)
    method = getattr(fitted, "method_", None) or getattr(fitted, "source_", None)
    about = f"{labelled.name} ({n_gold} gold ballots" + (f"; {method}" if method else "") + ")"
    log.info("fitted_beforehand", strategy=strategy.name, on=labelled.name, n_gold=n_gold,
             method=method, judges_not_in_fit=unknown)
    return fitted, about


def poll_scenario(
    scenario: Scenario,
    *,
    address: str | None = None,
    on_progress: Callable[[Request], None] | None = None,
    concurrency: int | None = None,
    debates: Sequence[Debate] = (),
) -> Polled:
    """Collect the panel's votes on every request, without deciding (for experiments); with
    ``debates``, also run each debate's later rounds from the same round-1 votes (its final
    votes and records are in ``Polled.debated``, in order)."""
    ensure_ray(address)
    panel = Panel.start(scenario.judges, scenario.base_dir, payloads=scenario.payloads)
    sem = asyncio.Semaphore(concurrency or scenario.file.concurrency)
    latency: dict[str, float] = {}
    debated: list[dict[str, tuple[tuple[Vote, ...], Deliberation, float]]] = [{} for _ in debates]
    coord = Coordinator(panel, scenario.strategy, scenario.file.policy)

    async def one(req: Request) -> tuple[Vote, ...]:
        async with sem:
            start = time.perf_counter()
            votes = await coord.poll(req)
            latency[req.id] = time.perf_counter() - start
            for k, debate in enumerate(debates):
                t0 = time.perf_counter()
                final, record = await run_debate(panel, req, votes, debate,
                                                 first_latency_s=latency[req.id])
                debated[k][req.id] = (final, record,
                                      latency[req.id] + time.perf_counter() - t0)
            if on_progress:
                on_progress(req)
            return votes

    async def all_votes() -> list[tuple[Vote, ...]]:
        return await asyncio.gather(*(one(r) for r in scenario.requests))

    try:
        votes = asyncio.run(all_votes())
    finally:
        panel.shutdown()
    base = Polled(
        scenario=scenario.name, requests=scenario.requests,
        votes={r.id: v for r, v in zip(scenario.requests, votes, strict=True)},
        latency_s=latency, panel_size=panel.size, judges=tuple(s.name for s in panel.specs),
        families=panel.families,
    )
    return replace(base, debated=tuple(
        replace(base, votes={rid: v for rid, (v, _, _) in d.items()},
                latency_s={rid: t for rid, (_, _, t) in d.items()},
                deliberations={rid: rec for rid, (_, rec, _) in d.items()})
        for d in debated))


def summary_rows(summary: RunSummary) -> list[tuple[str, Any]]:
    """The headline figures of a summary, for tables."""
    return [
        ("requests", summary.n_requests),
        ("accuracy", summary.accuracy),
        ("intervention rate", summary.intervention_rate),
        ("over-refusal rate", summary.over_refusal_rate),
        ("false-block rate", summary.false_block_rate),
        ("safety score", summary.safety_score),
        ("no-consensus rate", summary.no_consensus_rate),
        ("Fleiss' kappa", summary.fleiss_kappa),
        ("Krippendorff's alpha", summary.krippendorff_alpha),
        ("effective judges", summary.effective_judges),
        ("latency p50 (s)", summary.latency_p50_s),
        ("latency p99 (s)", summary.latency_p99_s),
        ("wall time (s)", summary.wall_time_s),
        *((("strategy fitted on", summary.fitted_on),) if summary.fitted_on else ()),
        *((f"{a} delivered / chosen", f"{x['delivered']} / {x['chosen']} ({x['drafts']} drafts)")
          for a in ("revise", "regenerate")
          if (x := summary.interventions.get(a)) and x.get("chosen")),
    ]
