"""Run a scenario on Ray: start the panel, decide every request, record, summarise.

Every decision is written to the SQLite store and to ``decisions.jsonl`` as soon as it is made
(one transaction each), so an interrupted run keeps what it decided. The output folder is
locked for the run (:class:`~consensus.reports.files.RunFolder`). At the end (or when the run is
interrupted, with status ``interrupted``) the run writes
``summary.json``, ``decisions.csv``, ``votes.csv`` and ``report.html`` (see :mod:`consensus.reports.files`).

Example (needs Ray)::

    result = run_scenario(load_scenario("scenarios/safety_smoke.yaml"), Path("out"))
    print(result.summary.accuracy)
"""

from __future__ import annotations

import asyncio
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
from consensus.store import open_store
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
) -> RunResult:
    """Run ``scenario`` and write the output directory contract into ``out_dir``.

    The folder is locked for the run and emptied of an earlier run's files first; the store is
    opened before Ray starts, so a bad ``--out`` or ``--store`` fails at once. Once the panel
    is up, ``summary.json`` says ``running`` until the end; a run stopped early (Ctrl-C, an
    error) still writes its summary, CSVs and report for the requests it decided, with status
    ``interrupted``.
    """
    run_id = f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    strategy_name = scenario.strategy.name
    with RunFolder(out_dir, inputs=scenario.input_files()) as folder:
        folder.claim(run_id)
        store = open_store(store_path or out_dir / "consensus.sqlite")
        try:
            structlog.contextvars.bind_contextvars(run_id=run_id)
            ensure_ray(address)
            strategy, fitted_on = fit_beforehand(scenario, address=address)
            store.start_run(run_id, scenario=scenario.name, strategy=strategy_name,
                            config=scenario.file.model_dump(mode="json"))
            start = time.perf_counter()
            outcomes: list[Outcome] = []
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
                                    watcher=watcher_for(scenario))
                write_summary(out_dir / "summary.json", RunSummary(
                    scenario=scenario.name, strategy=strategy_name, run_id=run_id,
                    n_requests=0, status="running"))
                with DecisionLog(out_dir / "decisions.jsonl") as jsonl:

                    def record(req: Request, outcome: Outcome) -> None:
                        store.record(run_id, outcome)
                        jsonl.write(outcome)
                        outcomes.append(outcome)
                        if on_progress:
                            on_progress(req, outcome)

                    log.info("run_start", scenario=scenario.name, strategy=strategy_name,
                             n_requests=len(scenario.requests), judges=len(panel.specs))
                    asyncio.run(coord.run(
                        scenario.requests, concurrency=concurrency or scenario.file.concurrency,
                        on_outcome=record,
                    ))
                status = "complete"
            finally:
                panel.shutdown()
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
    return RunResult(run_id, out_dir, summary, outcomes)


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
