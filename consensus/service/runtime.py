"""What one ingress replica holds: the coordinators, the store writer, the upstream model.

The judge hosts are started once per panel by the process that starts the service
(:mod:`consensus.service.serve`) and shared by every replica: a replica gets their handles, and
builds a :class:`~consensus.coordinator.Coordinator` per (panel, strategy, policy) on first use
(a coordinator is a few Python objects; the judges are not copied).

Every decision goes through :meth:`Runtime.decide`, which records it in the store (one
transaction with its votes, on one writer thread per replica) before it returns: a response is
sent only after its decision is committed. A request id is an idempotency key: a repeated id gets
the recorded decision back (``replayed``), and two racing copies of one id are recorded once
(the store refuses the second; it is answered from the first).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from consensus.competence import wants_reviews
from consensus.coordinator import Coordinator
from consensus.errors import ConfigError
from consensus.generator import Generator
from consensus.policy import Policy
from consensus.review import ReviewQueue
from consensus.runner import interventions_for, watcher_for
from consensus.service.config import DEFAULT_POLICY, ServedPanel, ServiceConfig
from consensus.service.metrics import Event, outcome_events
from consensus.store import DuplicateDecision, ReviewError, open_store
from consensus.types import ACCEPT, REJECT, Outcome, Request
from strategies.base import Strategy, learns

log = structlog.get_logger("consensus.service")

METRICS_FLUSH_S = 0.25
"""How long a replica gathers metric events before it sends them to the hub in one call."""


class ApiError(Exception):
    """A request the service refuses: an HTTP status, a message, an OpenAI error type."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (status, message, kind,
                                                                       param, code)


@dataclass(frozen=True)
class Choice:
    """The panel, strategy and policy one request is decided by (names as the client sees)."""

    panel: str
    strategy: str
    policy: str


def default_store() -> str:
    """The embedded default: an SQLite file under the user's data directory."""
    from platformdirs import user_data_dir

    return f"{user_data_dir('consensus', appauthor=False)}/service.sqlite"


class Runtime:
    """A replica's state (see the module docstring).

    Args:
        config: The service configuration, read by the starting process.
        panels: Panel name -> :class:`~consensus.coordinator.Panel` (running judge hosts).
        hub: The metrics hub actor (None: metrics are not collected, e.g. in unit tests).
    """

    def __init__(self, config: ServiceConfig, panels: Mapping[str, Any], hub: Any = None):
        self.config = config
        self.panels = dict(panels)
        self.hub = hub
        self._events: list[Event] = []  # queued for the hub (see emit)
        self._flush_at: asyncio.TimerHandle | None = None
        self._coords: dict[tuple[str, str, str], Coordinator] = {}
        self._strategies: dict[tuple[str, str], Strategy] = {}
        self.upstream = Generator(config.upstream) if config.upstream is not None else None
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")
        self._read_store: Any = None  # see _reader
        target = config.store or default_store()
        # opened on the writer thread (SQLite connections stay on theirs); a bad store fails
        # the replica now
        self._store: Any = self._writer.submit(open_store, target).result()
        self.review_queue = ReviewQueue(self._store)  # used on the writer thread only
        for p in config.panels.values():
            self._writer.submit(self._store.ensure_run, p.run_id, scenario=p.scenario.name,
                                strategy=p.scenario.strategy.name,
                                config=p.scenario.file.model_dump(mode="json")).result()

    # ------------------------------------------------------------------ choosing
    def choose(self, principal: str | None, panel: str | None, strategy: str | None,
               policy: str | None) -> Choice:
        """Resolve a request's names against the service and the token's access."""
        cfg = self.config
        name = panel or cfg.default_panel
        if name not in cfg.panels:
            raise ApiError(404, f"unknown panel {name!r}; this service has "
                                f"{', '.join(cfg.panels)}", param="panel",
                           code="panel_not_found")
        pol = policy or DEFAULT_POLICY
        if pol not in cfg.policy_names():
            raise ApiError(404, f"unknown policy {pol!r}; this service has "
                                f"{', '.join(cfg.policy_names())}", param="policy",
                           code="policy_not_found")
        access = cfg.access.get(principal) if principal is not None else None
        if access is not None:
            if access.panels is not None and name not in access.panels:
                raise ApiError(403, f"this token may not use panel {name!r}",
                               kind="permission_error", param="panel")
            if access.policies is not None and pol not in access.policies:
                raise ApiError(403, f"this token may not use policy {pol!r}",
                               kind="permission_error", param="policy")
        served = cfg.panels[name]
        strat = strategy or served.scenario.strategy.name
        if strategy is not None and strategy != served.scenario.strategy.name:
            self._strategy(served, strategy)  # refused here, before any judge is called
        return Choice(name, strat, pol)

    def _strategy(self, served: ServedPanel, name: str) -> Strategy:
        key = (served.name, name)
        if key not in self._strategies:
            try:
                built = served.scenario.with_strategy(name).strategy
            except ConfigError as exc:
                raise ApiError(400, f"strategy {name!r}: {exc.message}",
                               param="strategy") from None
            if learns(built):
                raise ApiError(400, f"strategy {name!r} learns from a batch; name it in the "
                                    "panel's scenario with fit_on to serve it",
                               param="strategy")
            self._strategies[key] = built
        return self._strategies[key]

    def policy_of(self, choice: Choice) -> Policy:
        served = self.config.panels[choice.panel]
        return served.policy if choice.policy == DEFAULT_POLICY else \
            self.config.policies[choice.policy]

    def coordinator(self, choice: Choice) -> Coordinator:
        key = (choice.panel, choice.strategy, choice.policy)
        coord = self._coords.get(key)
        if coord is None:
            served = self.config.panels[choice.panel]
            sc = served.scenario
            strategy = sc.strategy if choice.strategy == sc.strategy.name else \
                self._strategy(served, choice.strategy)
            policy = self.policy_of(choice)
            inter = interventions_for(sc, policy=policy, generator=self.config.upstream)
            coord = Coordinator(self.panels[choice.panel], strategy, policy, refit=False,
                                run_id=served.run_id, interventions=inter,
                                constitution_version=constitution_version(sc),
                                competences=self._reader() if wants_reviews(strategy) else None)
            self._coords[key] = coord
        return coord

    # ------------------------------------------------------------------ deciding
    async def stored(self, choice: Choice, request_id: str) -> Outcome | None:
        """The recorded decision of ``request_id`` in the panel's run, if any."""
        run_id = self.config.panels[choice.panel].run_id
        return await self._write(self._store.outcome, run_id, request_id)

    async def screen(self, choice: Choice, request: Request) -> Outcome | None:
        """The input-screening block of ``request`` (policy ``screen_input``), else None."""
        return await self.coordinator(choice).screen(request)

    async def decide(self, choice: Choice, request: Request,
                     outcome: Outcome | None = None) -> tuple[Outcome, bool]:
        """Decide ``request`` (or take the given ``outcome``, e.g. an input block), commit it,
        and return it with whether it was a replay of a recorded decision."""
        if outcome is None:
            coord = self.coordinator(choice)
            limit = self.config.limits.request_timeout_s
            start = time.perf_counter()
            try:
                async with asyncio.timeout(limit):
                    outcome = await coord.decide(request)
            except TimeoutError:  # fail closed, and on record like any decision
                outcome = timed_out(coord, request, limit, time.perf_counter() - start)
        run_id = self.config.panels[choice.panel].run_id
        try:
            await self._write(self._store.record, run_id, outcome, request=request)
        except DuplicateDecision:
            first = await self._write(self._store.outcome, run_id, request.id)
            if first is None:  # cannot be: the store refused a duplicate of a row it lacks
                raise ApiError(500, "the store refused a decision it does not hold",
                               kind="server_error") from None
            return first, True
        self.emit(outcome_events(choice.panel, outcome))
        return outcome, False

    async def review(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call :class:`~consensus.review.ReviewQueue` ``method`` on the writer thread (the
        store's connection lives there); its refusals become HTTP errors: unknown 404,
        claimed 409, invalid 400."""
        try:
            return await self._write(getattr(self.review_queue, method), *args, **kwargs)
        except ReviewError as exc:
            status = {"unknown": 404, "claimed": 409}.get(exc.code, 400)
            raise ApiError(status, str(exc), code={"unknown": "review_not_found",
                                                   "claimed": "review_conflict"}.get(
                                                       exc.code, "invalid_review")) from None

    def _reader(self) -> Any:
        """A second connection to the store, for the event loop's thread (an SQLite connection
        stays on the thread that opened it; the writer's is busy writing): a ``from_reviews``
        strategy reads the reviewers' competences through it before each decision."""
        if self._read_store is None:
            self._read_store = open_store(self.config.store or default_store())
        return self._read_store

    async def _write(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    # ------------------------------------------------------------------ metrics
    def emit(self, events: list[Event]) -> None:
        """Queue events for the hub; they leave together in one fire-and-forget call at most
        ``METRICS_FLUSH_S`` later (a Ray call costs a replica about as much CPU as the judges'
        poll: one per event batch, not two per request). A lost event never fails a request."""
        if self.hub is None or not events:
            return
        self._events.extend(events)
        if self._flush_at is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a unit test): send now
                self.flush()
                return
            self._flush_at = loop.call_later(METRICS_FLUSH_S, self.flush)

    def flush(self) -> None:
        """Send the queued events now (``/metrics`` calls it before it reads the hub)."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        events, self._events = self._events, []
        if events and self.hub is not None:
            self.hub.record.remote(events)

    def request_done(self, endpoint: str, status: int, started: float) -> None:
        self.emit([("inc", "requests_total", {"endpoint": endpoint, "status": str(status)}, 1.0),
                   ("observe", "request_latency_seconds", {"endpoint": endpoint},
                    time.perf_counter() - started)])

    async def ready(self) -> dict[str, Any]:
        """What ``/readyz`` reports: each panel's judges and decisions recorded (a query, so
        a store that does not answer makes the service not ready: ApiError 503)."""
        out: dict[str, Any] = {}
        for name, panel in self.panels.items():
            try:
                n = await self._write(self._store.count_decisions,
                                      self.config.panels[name].run_id)
            except Exception as exc:  # noqa: BLE001 - any store failure means not ready
                raise ApiError(503, f"the store does not answer ({type(exc).__name__})",
                               kind="server_error", code="store_unavailable") from None
            out[name] = {"judges": panel.size, "disabled": panel.disabled, "decisions": n}
        return {"panels": out}

    def close(self) -> None:
        self.flush()
        if self._read_store is not None:
            self._read_store.close()
        if self._store is not None:
            self._writer.submit(self._store.close).result()
        self._writer.shutdown()


def constitution_version(scenario: Any) -> str | None:
    """The version stamp of a panel's constitutions (as hot reload computes it)."""
    if not scenario.constitution_files:
        return None
    return watcher_for(scenario).version()


def timed_out(coord: Coordinator, request: Request, limit: float, latency_s: float) -> Outcome:
    """The fail-closed outcome of a request the panel did not decide within ``limit``: every
    subject is a no-consensus (quorum missed), the policy's refusal is delivered."""
    from consensus.types import Ballot
    from strategies.base import no_consensus

    why = f"no decision within the service's request_timeout_s ({limit:g}s): failed closed"
    subjects = [c.id for c in request.candidates] if request.task == "verdict" else ["*"]
    labels = ((ACCEPT, REJECT) if request.task == "verdict"
              else tuple(c.id for c in request.candidates))
    decisions = tuple(no_consensus(Ballot(request_id=request.id, subject=s, labels=labels,
                                          votes=(), panel_size=coord.panel.size),
                                   strategy=coord.strategy.name, reason=why, quorum_met=False)
                      for s in subjects)
    return Outcome(request_id=request.id, run_id=coord.run_id, action="block",
                   output=coord.policy.refusal_message, reason=why, decisions=decisions,
                   latency_s=latency_s, constitution_version=coord.constitution_version)
