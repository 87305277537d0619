"""Ray hosting of judges: one thin async actor per host, many judges per host.

A :class:`JudgeHost` builds its judges once in ``__init__`` (from specs and the payloads the
driver prepared) and answers batched calls: one Ray call per (request, host) carries every
(judge, candidate) pair that host serves for that request; inside, the calls run concurrently,
each bounded by its judge's timeout. I/O-bound judges (LLM, replay, simulated, rules) share one
host with high ``max_concurrency``; local models (classifiers) get a host of their own with
``num_cpus``. Hosts restart on failure (``max_restarts``) and a call is retried once after a
restart (judging is read-only, so a retry is safe).

Example (needs a running Ray)::

    hosts = plan_hosts(specs)                    # {"llm": [spec, ...], "classifier:tox": [...]}
    handle = start_host("llm", [(spec, payload), ...])
    votes = await handle.judge_batch.remote(request, [("gpt", "a"), ("gpt", "b")])
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Sequence
from typing import Any

import ray

from consensus.redact import register_secrets_from_env
from consensus.types import AbstainKind, Candidate, PeerView, Request, Vote
from judges.base import HOST_GRACE_S, Deliberating, Judge, JudgeSpecBase
from judges.registry import build_judge, host_name

DebateCall = tuple[str, str | None, Vote, Sequence[PeerView]]
"""One call of a debate round: judge name, candidate id (None: pairwise), its previous vote,
and the peers it sees."""

MAX_CONCURRENCY = 1000
"""Concurrent batched calls per host: I/O-bound judges spend their time waiting."""


def plan_hosts(specs: Sequence[JudgeSpecBase]) -> dict[str, list[JudgeSpecBase]]:
    """Group specs by host, in panel order."""
    out: dict[str, list[JudgeSpecBase]] = {}
    for s in specs:
        out.setdefault(host_name(s), []).append(s)
    return out


MAX_VERSIONS = 8
"""Reloaded versions of its judges a host keeps (requests in flight may still use older ones)."""


class JudgeHostImpl:
    """The actor body; also usable in-process (tests, the lower-bound benchmark).

    Hot reload: :meth:`reload` builds new judges under a version tag beside the current ones;
    a call names the version it wants (``judge_batch(..., version=...)``), so a request in
    flight keeps the judges it started with and every judge of a request, on every host, uses
    the same version. A call without a known version uses the judges the host was built with.
    """

    def __init__(self, judges: Sequence[tuple[JudgeSpecBase, Any]]):
        self.specs = {spec.name: spec for spec, _ in judges}
        self.judges: dict[str, Judge] = {spec.name: build_judge(spec, payload)
                                         for spec, payload in judges}
        self.versions: dict[str, tuple[dict[str, JudgeSpecBase], dict[str, Judge]]] = {}

    def ready(self) -> list[str]:
        """Names of the hosted judges (awaiting this surfaces construction errors)."""
        return list(self.judges)

    def add_version(self, version: str, judges: Sequence[tuple[JudgeSpecBase, Any]]) -> None:
        """Build ``judges`` (the changed ones) as ``version``; the others carry over from the
        newest version. A judge that fails to build raises, and nothing changes."""
        base_specs, base_judges = (next(reversed(self.versions.values())) if self.versions
                                   else (self.specs, self.judges))
        built = {spec.name: build_judge(spec, payload) for spec, payload in judges}
        self.versions[version] = ({**base_specs, **{s.name: s for s, _ in judges}},
                                  {**base_judges, **built})
        while len(self.versions) > MAX_VERSIONS:
            del self.versions[next(iter(self.versions))]

    async def judge_batch(
        self, request: Request, calls: Sequence[tuple[str, str | None]],
        version: str | None = None,
    ) -> list[Vote]:
        """Run every (judge name, candidate id or None) call concurrently, in order."""
        specs, judges = self.versions.get(version or "", (self.specs, self.judges))
        if len(calls) == 1:  # one call needs no task of its own
            ((judge, target),) = calls
            return [await self._one(request, judge, target, specs, judges)]
        return list(await asyncio.gather(*(self._one(request, j, c, specs, judges)
                                           for j, c in calls)))

    async def debate_batch(
        self, request: Request, calls: Sequence[DebateCall], round: int,
        version: str | None = None,
    ) -> list[Vote]:
        """Debate round ``round``: every (judge, candidate id or None, previous vote, peers)
        call concurrently, in order. A judge that does not deliberate keeps its previous vote."""
        specs, judges = self.versions.get(version or "", (self.specs, self.judges))
        return list(await asyncio.gather(*(
            self._one(request, j, c, specs, judges, (prev, peers, round))
            for j, c, prev, peers in calls)))

    async def _one(self, request: Request, judge_name: str, candidate_id: str | None,
                   specs: dict[str, JudgeSpecBase], judges: dict[str, Judge],
                   debate: tuple[Vote, Sequence[PeerView], int] | None = None) -> Vote:
        judge = judges[judge_name]
        spec = specs[judge_name]
        candidate: Candidate | None = (
            request.candidate(candidate_id) if candidate_id is not None else None
        )
        if debate is not None and not isinstance(judge, Deliberating):
            return debate[0]
        start = time.perf_counter()
        try:
            # asyncio.timeout bounds the call in this task (wait_for would start another).
            async with asyncio.timeout(spec.max_wait_s() + HOST_GRACE_S):
                if debate is not None and isinstance(judge, Deliberating):
                    vote = await judge.deliberate(request, candidate, *debate)
                else:
                    vote = await judge.judge(request, candidate)
        except TimeoutError:
            return self._abstain(request, judge, judge_name, candidate_id, start, "timeout",
                                 f"no vote within {spec.max_wait_s():g}s")
        except Exception as exc:  # noqa: BLE001 - a judge never raises into the coordinator
            return self._abstain(request, judge, judge_name, candidate_id, start, "error",
                                 f"{type(exc).__name__}: {exc}"[:300])
        if vote.latency_s == 0.0:
            vote = vote.model_copy(update={"latency_s": time.perf_counter() - start})
        return vote

    @staticmethod
    def _abstain(request: Request, judge: Judge, judge_name: str, candidate_id: str | None,
                 start: float, kind: AbstainKind, reason: str) -> Vote:
        return Vote.abstain(judge=judge_name, judge_version=judge.version, request_id=request.id,
                            candidate_id=candidate_id if candidate_id is not None else "*",
                            kind=kind, reason=reason, latency_s=time.perf_counter() - start)


@ray.remote(num_cpus=0, max_restarts=0)
class PayloadStore:
    """Holds the judges' payloads for the hosts of one panel, for as long as the panel lives.

    Hosts fetch their payloads from here when they build their judges, at start and again after
    a restart. Passing them as constructor arguments would put them in the object store
    implicitly, where a restarted actor may not find them (ray-project/ray#53727, the warning
    Ray prints for such actors).
    """

    def __init__(self) -> None:
        self._items: dict[int, Any] = {}
        self._versions: list[tuple[str, list[tuple[JudgeSpecBase, Any]]]] = []

    def put(self, key: int, payload: Any) -> None:
        self._items[key] = payload

    def get(self, keys: Sequence[int]) -> list[Any]:
        return [self._items[k] for k in keys]

    def add_version(self, version: str, judges: list[tuple[JudgeSpecBase, Any]]) -> None:
        """Remember a reloaded version, so a host that restarts rebuilds it too."""
        self._versions = [*self._versions, (version, judges)][-MAX_VERSIONS:]

    def versions(self) -> list[tuple[str, list[tuple[JudgeSpecBase, Any]]]]:
        return self._versions


@ray.remote(max_restarts=3, max_task_retries=1)
class JudgeHost(JudgeHostImpl):
    """Ray actor hosting judges (see :class:`JudgeHostImpl`); it builds them on first use,
    from payloads fetched from its panel's :class:`PayloadStore` (after a restart, too)."""

    def __init__(self, specs: Sequence[tuple[JudgeSpecBase, int | None]], store: str):
        register_secrets_from_env()  # this process's edge: its votes mask the keys it can see
        self._pending = list(specs)
        self._store = store  # the store's actor name: a handle argument would count as an
        # argument in the object store, which is what the store is here to avoid
        self._built = asyncio.Lock()
        self.specs = {}
        self.judges = {}

    async def _build(self) -> None:
        async with self._built:
            if not self._pending:
                return
            keys = [k for _, k in self._pending if k is not None]
            fetched: dict[int, Any] = {}
            if keys:
                store = ray.get_actor(self._store)
                fetched = dict(zip(keys, await store.get.remote(keys), strict=True))
            JudgeHostImpl.__init__(self, [(spec, fetched.get(k) if k is not None else None)
                                          for spec, k in self._pending])
            if self._store:  # reloaded versions, after a restart
                store = ray.get_actor(self._store)
                for version, judges in await store.versions.remote():
                    mine = [(s, p) for s, p in judges if s.name in self.specs]
                    if mine:
                        self.add_version(version, mine)
            self._pending = []
            # The ~420k long-lived objects of ray and litellm leave the full-collection scans:
            # each scan cost ~220 ms and 3-7 ms per decision under load (benchmarks/README.md).
            gc.collect()
            gc.freeze()

    async def ready(self) -> list[str]:  # type: ignore[override]
        await self._build()
        return list(self.judges)

    async def judge_batch(
        self, request: Request, calls: Sequence[tuple[str, str | None]],
        version: str | None = None,
    ) -> list[Vote]:
        if self._pending:
            await self._build()
        return await JudgeHostImpl.judge_batch(self, request, calls, version)

    async def debate_batch(
        self, request: Request, calls: Sequence[DebateCall], round: int,
        version: str | None = None,
    ) -> list[Vote]:
        if self._pending:
            await self._build()
        return await JudgeHostImpl.debate_batch(self, request, calls, round, version)

    async def reload(self, version: str, judges: list[tuple[JudgeSpecBase, Any]]) -> list[str]:
        """Build a new version of some of this host's judges (see :class:`JudgeHostImpl`)."""
        if self._pending:
            await self._build()
        self.add_version(version, judges)
        return [s.name for s, _ in judges]


def start_payloads(payloads: Sequence[Any], *, force: bool = False
                   ) -> tuple[Any, str, list[int | None]]:
    """Start a :class:`PayloadStore` holding ``payloads`` (one copy per distinct object) and
    wait until it holds them; returns the store, its actor name and each payload's key (None
    for None). Without any payload (LLM, simulated, classifier judges) no store is started
    unless ``force`` (a panel whose constitution may be reloaded): the store and its name are
    then None and ""."""
    if all(p is None for p in payloads) and not force:
        return None, "", [None] * len(payloads)
    name = f"consensus-payloads-{uuid.uuid4().hex}"
    store = PayloadStore.options(name=name).remote()  # type: ignore[attr-defined]
    keys: list[int | None] = []
    sent: dict[int, Any] = {}
    for payload in payloads:
        if payload is None:
            keys.append(None)
            continue
        if id(payload) not in sent:
            sent[id(payload)] = store.put.remote(id(payload), payload)
        keys.append(id(payload))
    ray.get(list(sent.values()))
    return store, name, keys


def start_host(name: str, judges: Sequence[tuple[JudgeSpecBase, int | None]], store: str) -> Any:
    """Start one host actor with the resources its judges ask for; ``judges`` pairs each spec
    with the key of its payload in the store named ``store`` (see :func:`start_payloads`)."""
    num_cpus = max((spec.num_cpus for spec, _ in judges), default=0.0)
    return JudgeHost.options(  # type: ignore[attr-defined]
        name=None,
        num_cpus=num_cpus,
        max_concurrency=MAX_CONCURRENCY,
        # over the nodes of a cluster: a lost node takes a share of the panel, not all of it
        scheduling_strategy="SPREAD",
    ).remote(list(judges), store)
