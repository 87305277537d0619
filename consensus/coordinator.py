"""Coordinator: fan out to judge actors, bound every wait, check the quorum, aggregate, intervene.

One request, end to end:

1. :meth:`Panel.poll` sends every (judge, candidate) call at once: one Ray call per host carrying
   all the calls that host serves for the request; it never awaits one before sending the next.
   Each call is bounded by its judge's ``timeout_s`` inside the host, and each host's batch by
   the largest timeout *of that host's judges* plus a grace period here, so a dead or hung actor
   costs abstentions, not a stuck request, and a slow host never holds up the votes of another.
   Ray errors are translated into abstentions in exactly this one place.
2. The votes form one :class:`Ballot` per subject; a ballot with fewer valid votes than the
   policy's quorum is "no consensus" without asking the strategy.
3. The strategy decides each ballot; the :class:`Policy` maps decisions to an action.
4. :class:`~consensus.interventions.Interventions` carries the action out: a revision or a
   regeneration is judged by the panel again (a ballot of its own), an escalation goes to the
   review hook. With ``policy.screen_input`` the prompt is screened first, and a prompt that
   fails screening is blocked without a judge call.

Learning strategies (those with ``fit``) are fitted on the ballots of the whole run before any
decision is made (:meth:`Coordinator.run`).

Example (needs Ray)::

    panel = Panel.start(specs, base_dir=Path("scenarios"))
    coord = Coordinator(panel, Majority(), Policy())
    outcome = asyncio.run(coord.decide(request))
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import structlog

from consensus.competence import CompetenceSource, as_source, check_strategy
from consensus.deliberation import run_debate
from consensus.errors import ConfigError
from consensus.interventions import InputScreen, Interventions
from consensus.policy import Choice, Policy
from consensus.reload import RELOAD_INTERVAL_S, ConstitutionWatcher
from consensus.types import (
    PAIRWISE_SUBJECT,
    RECUSED,
    AbstainKind,
    Ballot,
    Decision,
    Deliberation,
    Outcome,
    Request,
    Vote,
)
from judges.actor import DebateCall, plan_hosts, start_host, start_payloads
from judges.base import JudgeSpecBase
from judges.family import family_of, model_name_of
from judges.registry import prepare
from strategies.base import Strategy, agreement_of, fit_strategy, learns, no_consensus
from strategies.debate import Debate

log = structlog.get_logger("consensus.coordinator")

GRACE_S = 2.0
"""Extra wait beyond a host's largest judge timeout before its whole batch is given up."""
START_TIMEOUT_S = 120.0
"""How long starting a panel may take (actors scheduled, judges built) before it is an error."""


@dataclass
class Panel:
    """The running judges of a panel: host actors, and which judge lives where.

    Attributes:
        specs: Enabled judge specs, in panel order.
        disabled: Judges listed but not started, with the reason (e.g. missing API key).
        hosts: Host name -> actor handle.
        routes: Judge name -> host name.
    """

    specs: list[JudgeSpecBase]
    disabled: dict[str, str] = field(default_factory=dict)
    hosts: dict[str, Any] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    store: Any = None
    """The :class:`~judges.actor.PayloadStore` the hosts build their judges from."""

    @classmethod
    def start(
        cls,
        specs: Sequence[JudgeSpecBase],
        base_dir: Path,
        environ: dict[str, str] | None = None,
        *,
        payloads: Mapping[str, Any] | None = None,
        timeout_s: float = START_TIMEOUT_S,
    ) -> Panel:
        """Start one actor per host and wait until all are ready, at most ``timeout_s``.

        ``payloads`` are the judges' files as the scenario loader read them (by judge name);
        judges without one are prepared here, in the driver. A panel that asks for more CPUs
        than the cluster has, or whose actors are not ready in time, is a ConfigError (the
        actors started are stopped), never a wait without end.
        """
        enabled, disabled = [], {}
        for s in specs:
            missing = s.missing_env(environ)
            if missing:
                disabled[s.name] = f"missing environment variable(s): {', '.join(missing)}"
            else:
                enabled.append(s)
        cache: dict[Any, Any] = {}
        given = payloads or {}
        ready_payloads = {s.name: given[s.name] if s.name in given else prepare(s, base_dir, cache)
                          for s in enabled}
        plan = plan_hosts(enabled)
        _check_resources(plan)
        store, store_name, keys = start_payloads(
            [ready_payloads[s.name] for s in enabled],
            force=any(getattr(s, "principles", ()) for s in enabled))
        key_of = dict(zip((s.name for s in enabled), keys, strict=True))
        panel = cls(specs=enabled, disabled=disabled, store=store)
        for host, host_specs in plan.items():
            panel.hosts[host] = start_host(host, [(s, key_of[s.name]) for s in host_specs],
                                           store_name)
            for s in host_specs:
                panel.routes[s.name] = host
        refs = [h.ready.remote() for h in panel.hosts.values()]
        try:
            ready = ray.get(refs, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            panel.shutdown()
            raise ConfigError(f"the panel's judges were not ready within {timeout_s:g}s (is the "
                              "cluster short of resources?)", field="panel") from None
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
            panel.shutdown()
            cause = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
            raise ConfigError(f"a judge host failed to start: {cause}", field="panel") from None
        log.info("panel_ready", hosts={h: n for h, n in zip(panel.hosts, ready, strict=True)},
                 disabled=disabled or None)
        return panel

    @property
    def size(self) -> int:
        """Enabled judges."""
        return len(self.specs)

    def host_limits(self) -> dict[str, float]:
        """How long the coordinator waits for each host's batch: the largest bound
        (:meth:`~judges.base.JudgeSpecBase.max_wait_s`) among the judges it hosts, plus the
        grace period (longer than the host's own, so the host's reasons survive too)."""
        out: dict[str, float] = {}
        for s in self.specs:
            host = self.routes[s.name]
            out[host] = max(out.get(host, 0.0), s.max_wait_s() + GRACE_S)
        return out

    async def reload(self, version: str, judges: Sequence[tuple[JudgeSpecBase, Any]]) -> None:
        """Build ``judges`` (changed specs and payloads) as ``version`` on their hosts and
        remember them for hosts that restart; raises (and nothing switches) if a host cannot
        build them. Calls name the version they want (:meth:`poll`), so the switch is atomic."""
        per_host: dict[str, list[tuple[JudgeSpecBase, Any]]] = {}
        for spec, payload in judges:
            per_host.setdefault(self.routes[spec.name], []).append((spec, payload))
        await asyncio.gather(*(self.hosts[h].reload.remote(version, items)
                               for h, items in per_host.items()))
        if self.store is not None:
            await self.store.add_version.remote(version, list(judges))
        changed = {spec.name: spec for spec, _ in judges}
        self.specs = [changed.get(s.name, s) for s in self.specs]

    @property
    def families(self) -> dict[str, str | None]:
        """Judge name -> model family (None: not a model), for recusal and ``min_families``."""
        return {s.name: s.model_family() for s in self.specs}

    async def poll(self, request: Request, version: str | None = None, *,
                   skip: Mapping[tuple[str, str], str] | None = None) -> tuple[Vote, ...]:
        """Every enabled judge's vote on every subject of ``request``, in panel order; with
        ``version``, the judges of that reloaded version (see :meth:`reload`). ``skip`` maps
        (judge, subject) to a recusal reason: those calls are not made, the vote is a
        ``recusal`` abstention with that reason."""
        targets = poll_targets(request)
        skip = skip or {}
        per_host: dict[str, list[tuple[str, str | None]]] = {}
        for s in self.specs:
            per_host.setdefault(self.routes[s.name], []).extend(
                (s.name, t) for t in targets if (s.name, t or PAIRWISE_SUBJECT) not in skip)
        votes = await self._dispatch(
            request, {h: c for h, c in per_host.items() if c},
            lambda h, calls: self.hosts[h].judge_batch.remote(request, calls, version))
        return in_panel_order(request, self.specs, {**votes, **recused(request, skip)})

    async def debate(self, request: Request, round: int, calls: Sequence[DebateCall],
                     version: str | None = None) -> tuple[Vote, ...]:
        """One debate round: each (judge, candidate, previous vote, peers) call on the judge's
        host (see :mod:`consensus.deliberation`); the votes in the order of ``calls``."""
        per_host: dict[str, list[DebateCall]] = {}
        for call in calls:
            per_host.setdefault(self.routes[call[0]], []).append(call)
        votes = await self._dispatch(
            request, {h: [(c[0], c[1]) for c in cs] for h, cs in per_host.items()},
            lambda h, _: self.hosts[h].debate_batch.remote(request, per_host[h], round,
                                                           version))
        return tuple(votes[(c[0], c[1] if c[1] is not None else "*")] for c in calls)

    async def _dispatch(self, request: Request, per_host: Mapping[str, list[tuple[str, str | None]]],
                        send: Callable[[str, list[tuple[str, str | None]]], Any],
                        ) -> dict[tuple[str, str], Vote]:
        """Send each host its calls at once (``send`` makes the Ray call), bound each wait, and
        turn a failed host batch into abstentions: the votes by (judge, subject)."""
        hosts = list(per_host)
        limits = self.host_limits()
        refs = [send(h, per_host[h]) for h in hosts]
        results: Sequence[list[Vote] | tuple[AbstainKind, str]]
        if len(refs) == 1:  # one host (the usual LLM panel): no task to gather
            results = [await self._await(refs[0], limits[hosts[0]])]
        else:
            results = await asyncio.gather(*(self._await(r, limits[h])
                                             for h, r in zip(hosts, refs, strict=True)))
        votes: dict[tuple[str, str], Vote] = {}
        for host, result in zip(hosts, results, strict=True):
            if isinstance(result, list):
                for v in result:
                    votes[(v.judge, v.candidate_id)] = v
                continue
            kind, reason = result
            for judge, target in per_host[host]:
                subject = target if target is not None else "*"
                votes[(judge, subject)] = Vote.abstain(
                    judge=judge, request_id=request.id, candidate_id=subject, kind=kind,
                    reason=f"host {host}: {reason}",
                )
        return votes

    @staticmethod
    async def _await(ref: Any, limit: float) -> list[Vote] | tuple[AbstainKind, str]:
        """Await one host batch; translate Ray failures (the one Ray error boundary)."""
        try:
            # asyncio.timeout awaits the reference in this task (wait_for would start another).
            async with asyncio.timeout(limit):
                votes: list[Vote] = await ref
            return votes
        except TimeoutError:
            ray.cancel(ref)
            return ("timeout", f"no reply within {limit:g}s")
        except asyncio.CancelledError:
            # the caller gave up (an HTTP client disconnected): stop the judges' calls too,
            # not only this wait (cancelling an async actor's task cancels its LLM calls)
            ray.cancel(ref)
            raise
        except ray.exceptions.RayActorError as exc:
            return ("error", f"judge actor died: {type(exc).__name__}")
        except ray.exceptions.RayError as exc:
            return ("error", f"{type(exc).__name__}: {str(exc)[:200]}")

    def shutdown(self) -> None:
        """Stop the host actors."""
        for h in self.hosts.values():
            ray.kill(h)
        self.hosts.clear()
        if self.store is not None:
            ray.kill(self.store)
            self.store = None


def poll_targets(request: Request) -> list[str | None]:
    """The candidate of each call a poll makes per judge (None: one pairwise call)."""
    return [None] if request.task == "pairwise" else [c.id for c in request.candidates]


def recused(request: Request, skip: Mapping[tuple[str, str], str]
            ) -> dict[tuple[str, str], Vote]:
    """The recusal abstentions of the skipped (judge, subject) calls."""
    return {(judge, subject): Vote.abstain(judge=judge, request_id=request.id,
                                           candidate_id=subject, kind="recusal", reason=reason)
            for (judge, subject), reason in skip.items()}


def in_panel_order(request: Request, specs: Sequence[JudgeSpecBase],
                   votes: Mapping[tuple[str, str], Vote]) -> tuple[Vote, ...]:
    """A poll's votes by (judge, subject), ordered by subject, then panel order."""
    return tuple(votes[(s.name, t if t is not None else PAIRWISE_SUBJECT)]
                 for t in poll_targets(request) for s in specs)


def _check_resources(plan: Mapping[str, Sequence[JudgeSpecBase]]) -> None:
    """Refuse a panel whose hosts ask for more CPUs than the whole cluster has."""
    total = float(ray.cluster_resources().get("CPU", 0.0))
    for specs in plan.values():
        need = max((s.num_cpus for s in specs), default=0.0)
        if need > total:
            names = ", ".join(s.name for s in specs if s.num_cpus == need)
            raise ConfigError(f"judge(s) {names} ask for num_cpus={need:g} but the cluster has "
                              f"{total:g} CPU(s) in all; lower num_cpus or add nodes",
                              field="panel")


@dataclass(frozen=True)
class RecordedPanel:
    """A stand-in for a panel whose votes were already collected (experiments, tuning): the
    coordinator only needs its size for the quorum."""

    size: int
    families: Mapping[str, str | None] = field(default_factory=dict)
    """Judge name -> model family, where ``min_families`` must be checked on replay."""


def ballots_of(request: Request, votes: Sequence[Vote]) -> list[Ballot]:
    """Group a request's votes into one ballot per subject."""
    return [
        Ballot.for_subject(request, subj, tuple(v for v in votes if v.candidate_id == subj))
        for subj in request.subjects()
    ]


def mask_gold(ballots: Sequence[Ballot], visible: Collection[str] = ()) -> list[Ballot]:
    """``ballots`` with gold kept only on the requests in ``visible`` (none by default): what
    a learning strategy may see when it is fitted."""
    return [b if b.request_id in visible else b.model_copy(update={"gold": None})
            for b in ballots]


class Coordinator:
    """Panel + strategy + policy: decides requests, and carries the interventions out.

    Args:
        panel: Running judges (or anything with ``size`` and ``async poll(request)``).
        strategy: Aggregation strategy.
        policy: Quorum and intervention policy.
        interventions: Generator, principle texts, input screen and escalation hook (default:
            offline, no generator: a revise redacts located spans, a regenerate falls back).
        constitution_version: Stamped on every outcome (hot reload replaces it).
        competences: A store (or :class:`~consensus.competence.CompetenceSource`) whose
            reviews set the judges' competences: read before each request's decision and
            turned into the strategy's parameters (weighted, log_odds, calibrated; see
            :mod:`consensus.competence`). Required when the strategy has ``from_reviews``.
    """

    def __init__(self, panel: Any, strategy: Strategy, policy: Policy | None = None, *,
                 refit: bool = True, run_id: str = "",
                 interventions: Interventions | None = None,
                 constitution_version: str | None = None,
                 watcher: ConstitutionWatcher | None = None,
                 reload_interval_s: float = RELOAD_INTERVAL_S,
                 competences: Any = None):
        self.panel = panel
        self.strategy = strategy
        self.competences: CompetenceSource | None = as_source(competences)
        check_strategy(strategy, self.competences)
        self.policy = policy or Policy()
        self.refit = refit  # False: the strategy was fitted beforehand (e.g. on labelled data)
        self.run_id = run_id  # stamped on every outcome
        self.interventions = interventions or Interventions(self.policy)
        self.watcher = watcher
        self.reload_interval_s = reload_interval_s
        self.constitution_version = (watcher.version() if watcher is not None
                                     else constitution_version)
        self._versioned = False  # the panel knows reloaded versions: polls name theirs

    async def poll(self, request: Request, version: str | None = None) -> tuple[Vote, ...]:
        """The panel's votes on ``request`` under ``version`` of the constitution (judges
        whose family generated a candidate recuse themselves without a call)."""
        skip = self.recusals(request)
        extra: dict[str, Any] = {"skip": skip} if skip else {}
        if self._versioned:
            return await self.panel.poll(request, version, **extra)
        return await self.panel.poll(request, **extra)

    def families(self) -> Mapping[str, str | None]:
        """Judge name -> model family, as the panel knows them."""
        fam = getattr(self.panel, "families", None)
        return fam if isinstance(fam, Mapping) else {}

    def recusals(self, request: Request) -> dict[tuple[str, str], str]:
        """(judge, subject) -> reason, for judges that must not grade a candidate because their
        model family (``policy.recusal: family``) or model (``model``) generated it."""
        mode = self.policy.recusal
        specs = getattr(self.panel, "specs", None)
        if mode == "off" or not specs:
            return {}
        out: dict[tuple[str, str], str] = {}
        for c in request.candidates:
            made_by = c.author()
            if made_by is None:
                continue
            theirs = family_of(made_by) if mode == "family" else model_name_of(made_by)
            # pairwise: a judge whose family wrote any candidate sits the comparison out
            subject = PAIRWISE_SUBJECT if request.task == "pairwise" else c.id
            for spec in specs:
                mine = spec.model_family() if mode == "family" else spec.model_name()
                if mine is not None and mine == theirs and (spec.name, subject) not in out:
                    out[(spec.name, subject)] = (f"{RECUSED} candidate {c.id} was generated "
                                                 f"by {mode} {theirs}, the judge's own")
        return out

    async def gather(self, request: Request, version: str | None = None
                     ) -> tuple[tuple[Vote, ...], Deliberation | None]:
        """The votes a decision is made from: the poll, then the debate's later rounds when
        the strategy is a debate (:mod:`consensus.deliberation`)."""
        start = time.perf_counter()
        votes = await self.poll(request, version)
        if not isinstance(self.strategy, Debate):
            return votes, None
        return await run_debate(self.panel, request, votes, self.strategy, version,
                                first_latency_s=time.perf_counter() - start)

    async def reload(self, changed: Mapping[Path, Any]) -> str | None:
        """Switch to the watcher's constitutions after ``changed`` files changed (see
        :mod:`consensus.reload`); returns the new version. If a host cannot build the new judges
        the old version stays in force and the error is logged."""
        watcher = self.watcher
        if watcher is None or not changed:
            return self.constitution_version
        version = watcher.version()
        updates: list[tuple[JudgeSpecBase, Any]] = []
        for spec in self.panel.specs:
            path = watcher.files.get(spec.name)
            if path is None or path not in changed:
                continue
            new = changed[path]
            if spec.kind == "rules":
                updates.append((spec, new))
            elif hasattr(spec, "principles"):
                texts = [{"id": p.id, "text": p.text} for p in new.principles]
                updates.append((type(spec).model_validate(
                    {**spec.model_dump(), "principles": texts}), None))
        try:
            if updates:
                await self.panel.reload(version, updates)
        except Exception as exc:  # noqa: BLE001 - a failed reload keeps the old version
            watcher.errors.append(f"reload to {version} failed on a host: {exc}"[:300])
            log.error("constitution_reload_failed", version=version, error=str(exc)[:300])
            return self.constitution_version
        self._versioned = self._versioned or bool(updates)
        constitutions = watcher.constitutions()
        self.interventions.screen = InputScreen(constitutions) or None
        self.interventions.principles.update({p.id: p.text for c in constitutions
                                              for p in c.principles})
        log.info("constitution_reloaded", old=self.constitution_version, new=version,
                 files=[str(p) for p in changed], judges=[s.name for s, _ in updates])
        self.constitution_version = version
        return version

    async def watch(self) -> None:
        """Poll the watcher's files every ``reload_interval_s`` and reload what changed
        (runs until cancelled; :meth:`run` runs it for the length of a run)."""
        if self.watcher is None:
            return
        while True:
            await asyncio.sleep(self.reload_interval_s)
            changed = await asyncio.to_thread(self.watcher.poll)
            if changed:
                await self.reload(changed)

    def aggregate(self, ballot: Ballot) -> Decision:
        """Quorum check (and ``min_families``), then the strategy."""
        need = self.policy.min_valid(self.panel.size)
        if sum(ballot.counts().values()) < need:
            agreement = agreement_of(ballot)
            return no_consensus(
                ballot, strategy=self.strategy.name, quorum_met=False, agreement=agreement,
                reason=f"quorum missed: {agreement.n_valid} valid vote(s) of "
                       f"{agreement.n_votes}, {need} required",
            )
        if self.policy.min_families is not None:
            fam = self.families()
            have = {fam.get(v.judge) for v in ballot.valid_votes} - {None}
            if len(have) < self.policy.min_families:
                return no_consensus(
                    ballot, strategy=self.strategy.name, quorum_met=False,
                    reason=f"min_families missed: valid votes from {len(have)} model "
                           f"famil{'y' if len(have) == 1 else 'ies'} "
                           f"({', '.join(sorted(str(f) for f in have)) or 'none'}), "
                           f"{self.policy.min_families} required")
        d = (self.strategy.aggregate(ballot) if self.competences is None  # most strategies
             else self.competences.decide(self.strategy, ballot))  # compute the agreement
        return d if d.agreement is not None else d.model_copy(
            update={"agreement": agreement_of(ballot)})

    async def prepare_competences(self) -> None:
        """Read the competences from reviews, if any (one SELECT), and refit a ``calibrated``
        strategy on changed reviews in a worker thread
        (:meth:`consensus.competence.CompetenceSource.prepare`)."""
        if self.competences is not None:
            await self.competences.prepare(self.strategy)

    def decide_ballots(self, request: Request, votes: Sequence[Vote], *,
                       refresh: bool = True) -> list[Decision]:
        """One decision per subject of ``request`` (quorum, then the strategy); the
        competences from reviews, if any, are read first (one SELECT), unless ``refresh`` is
        False (the caller has just awaited :meth:`prepare_competences`)."""
        if self.competences is not None and refresh:
            self.competences.refresh()
        return [self.aggregate(b) for b in ballots_of(request, votes)]

    def conclude(self, request: Request, votes: Sequence[Vote], latency_s: float,
                 deliberation: Deliberation | None = None) -> Outcome:
        """Turn one request's votes into an outcome (no I/O but one debug log line); the
        action is the policy's choice, not yet carried out (see :meth:`decide`)."""
        return self._conclude(request, votes, latency_s, self.constitution_version,
                              deliberation)[0]

    def _rounds_decided(self, request: Request, deliberation: Deliberation,
                        decisions: Sequence[Decision]) -> Deliberation:
        """The debate record with each round's decisions by the strategy, and the subjects
        whose final decision differs from round 1's."""
        rounds = []
        for rec in deliberation.rounds:
            labels = {d.subject: d.label for d in self.decide_ballots(request, rec.votes)}
            rounds.append(rec.model_copy(update={"labels": labels}))
        first = rounds[0].labels if rounds else {}
        flipped = {d.subject: d.label != first.get(d.subject) for d in decisions}
        return deliberation.model_copy(update={"rounds": tuple(rounds), "flipped": flipped})

    def _conclude(self, request: Request, votes: Sequence[Vote], latency_s: float,
                  version: str | None, deliberation: Deliberation | None = None,
                  refresh: bool = True) -> tuple[Outcome, Choice]:
        decisions = tuple(self.decide_ballots(request, votes, refresh=refresh))
        choice = self.policy.choose(request, decisions, votes)
        if deliberation is not None:
            deliberation = self._rounds_decided(request, deliberation, decisions)
            cost = sum(r.cost_usd for r in deliberation.rounds)
        else:
            cost = sum(v.cost_usd for v in votes if v.cost_usd)
        log.debug("decided", request_id=request.id, action=choice.action,
                  latency_s=round(latency_s, 4), abstained=sum(v.abstained for v in votes))
        outcome = Outcome(
            request_id=request.id, run_id=self.run_id, action=choice.action,
            accepted_candidate=choice.candidate, output=choice.text, reason=choice.reason,
            decisions=decisions, votes=tuple(votes), latency_s=latency_s, cost_usd=cost,
            principle=choice.principle, severity=choice.severity,
            constitution_version=version,  # the one it was polled under (a reload may follow)
            deliberation=deliberation,
            escalation=choice.escalation,  # queued for review, action unchanged (spot checks,
        )                                  # a principle's block over a split panel)
        return outcome, choice

    async def _finish(self, request: Request, votes: Sequence[Vote], start: float,
                      version: str | None, deliberation: Deliberation | None = None) -> Outcome:
        """Conclude, carry the action out, and time the whole decision."""
        await self.prepare_competences()  # a refit on new reviews runs off the event loop
        outcome, choice = self._conclude(request, votes, time.perf_counter() - start, version,
                                         deliberation, refresh=False)
        if outcome.action in ("revise", "regenerate", "escalate"):
            outcome = await self.interventions.resolve(self, request, outcome, choice)
            outcome = outcome.model_copy(update={"latency_s": time.perf_counter() - start})
        return outcome

    async def screen(self, request: Request) -> Outcome | None:
        """The input-screening block of ``request`` (policy ``screen_input``), else None."""
        if not self.policy.screen_input:
            return None
        stopped = await self.interventions.screened(request)
        if stopped is None:
            return None
        return stopped.model_copy(update={"run_id": self.run_id,
                                          "constitution_version": self.constitution_version})

    async def decide(self, request: Request) -> Outcome:
        """Screen (when the policy asks), poll the panel, conclude and intervene."""
        start = time.perf_counter()
        version = self.constitution_version
        stopped = await self.screen(request)
        if stopped is not None:
            return stopped.model_copy(update={"latency_s": time.perf_counter() - start})
        votes, deliberation = await self.gather(request, version)
        return await self._finish(request, votes, start, version, deliberation)

    async def run(
        self,
        requests: Sequence[Request],
        *,
        concurrency: int = 32,
        on_outcome: Callable[[Request, Outcome], Awaitable[None] | None] | None = None,
    ) -> list[Outcome]:
        """Decide every request with at most ``concurrency`` in flight.

        Learning strategies are fitted on the ballots of the whole run first (transductive,
        unsupervised: gold labels are hidden from the fit, so the run's accuracy is not scored
        on labels the strategy learned from; ``consensus compare --gold-fraction`` evaluates
        learning from gold). ``on_outcome`` is called as each outcome is concluded (after its
        intervention was carried out).
        """
        sem = asyncio.Semaphore(concurrency)
        learning = self.refit and learns(self.strategy)

        Gathered = tuple[tuple[Vote, ...], Deliberation | None]
        Polled = tuple[Gathered | Outcome, float, str | None]

        async def polled(req: Request) -> Polled:
            structlog.contextvars.bind_contextvars(request_id=req.id)
            start = time.perf_counter()
            version = self.constitution_version
            stopped = await self.screen(req)
            if stopped is not None:
                return (stopped.model_copy(update={"latency_s": time.perf_counter() - start}),
                        0.0, version)
            return await self.gather(req, version), start, version

        async def finished(req: Request, got: Gathered | Outcome, start: float,
                           version: str | None) -> Outcome:
            if isinstance(got, Outcome):
                return got
            return await self._finish(req, got[0], start, version, got[1])

        async def decided(req: Request) -> Outcome:
            async with sem:  # a request's drafts count against its slot too
                outcome = await finished(req, *await polled(req))
            await _maybe_await(on_outcome(req, outcome) if on_outcome else None)
            return outcome

        async def bounded(req: Request) -> Polled:
            async with sem:
                return await polled(req)

        watching = asyncio.create_task(self.watch()) if self.watcher is not None else None
        try:
            if not learning:
                return list(await asyncio.gather(*(decided(r) for r in requests)))
            polls = await asyncio.gather(*(bounded(r) for r in requests))
            all_ballots = [b for r, (got, _, _) in zip(requests, polls, strict=True)
                           if not isinstance(got, Outcome) for b in ballots_of(r, got[0])]
            masked = mask_gold(all_ballots)
            # in a worker thread: a learning fit takes up to seconds, and the watcher (and any
            # other task of the loop) must go on meanwhile
            self.strategy = await asyncio.to_thread(fit_strategy, self.strategy, masked)
            if self.competences is not None:  # calibrated fits the reviews' gold and these
                self.competences.use_unlabelled(masked)
            out = []
            for r, (got, start, version) in zip(requests, polls, strict=True):
                outcome = await finished(r, got, start, version)
                await _maybe_await(on_outcome(r, outcome) if on_outcome else None)
                out.append(outcome)
            return out
        finally:
            if watching is not None:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching


async def _maybe_await(x: Awaitable[None] | None) -> None:
    if x is not None:
        await x
