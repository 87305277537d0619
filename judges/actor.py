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
from collections.abc import Sequence
from typing import Any

import ray

from consensus.types import Candidate, Request, Vote
from judges.base import Judge, JudgeSpecBase
from judges.registry import build_judge, is_shared_kind

MAX_CONCURRENCY = 1000
"""Concurrent batched calls per host: I/O-bound judges spend their time waiting."""


def host_name(spec: JudgeSpecBase) -> str:
    """The host a spec lands on: its ``host`` field, its kind if shared, else kind:name."""
    if spec.host:
        return spec.host
    return spec.kind if is_shared_kind(spec.kind) else f"{spec.kind}:{spec.name}"


def plan_hosts(specs: Sequence[JudgeSpecBase]) -> dict[str, list[JudgeSpecBase]]:
    """Group specs by host, in panel order."""
    out: dict[str, list[JudgeSpecBase]] = {}
    for s in specs:
        out.setdefault(host_name(s), []).append(s)
    return out


class JudgeHostImpl:
    """The actor body; also usable in-process (tests, the lower-bound benchmark)."""

    def __init__(self, judges: Sequence[tuple[JudgeSpecBase, Any]]):
        self.specs = {spec.name: spec for spec, _ in judges}
        self.judges: dict[str, Judge] = {spec.name: build_judge(spec, payload)
                                         for spec, payload in judges}

    def ready(self) -> list[str]:
        """Names of the hosted judges (awaiting this surfaces construction errors)."""
        return list(self.judges)

    async def judge_batch(
        self, request: Request, calls: Sequence[tuple[str, str | None]]
    ) -> list[Vote]:
        """Run every (judge name, candidate id or None) call concurrently, in order."""
        return list(await asyncio.gather(*(self._one(request, j, c) for j, c in calls)))

    async def _one(self, request: Request, judge_name: str, candidate_id: str | None) -> Vote:
        judge = self.judges[judge_name]
        spec = self.specs[judge_name]
        candidate: Candidate | None = (
            request.candidate(candidate_id) if candidate_id is not None else None
        )
        subject = candidate_id if candidate_id is not None else "*"
        start = time.perf_counter()
        common = {"judge": judge_name, "judge_version": judge.version,
                  "request_id": request.id, "candidate_id": subject}
        try:
            vote = await asyncio.wait_for(judge.judge(request, candidate), spec.timeout_s)
        except TimeoutError:
            return Vote.abstain(kind="timeout", reason=f"no vote within {spec.timeout_s:g}s",
                                latency_s=time.perf_counter() - start, **common)
        except Exception as exc:  # a judge never raises into the coordinator
            return Vote.abstain(kind="error", reason=f"{type(exc).__name__}: {exc}"[:300],
                                latency_s=time.perf_counter() - start, **common)
        if vote.latency_s == 0.0:
            vote = vote.model_copy(update={"latency_s": time.perf_counter() - start})
        return vote


@ray.remote(max_restarts=3, max_task_retries=1)
class JudgeHost(JudgeHostImpl):
    """Ray actor hosting judges (see :class:`JudgeHostImpl`)."""

    def __init__(self, judges: Sequence[tuple[JudgeSpecBase, Any]]):
        super().__init__(judges)
        # The ~420k long-lived objects of ray and litellm leave the full-collection scans: each
        # scan cost ~220 ms and 3-7 ms per decision under load (benchmarks/README.md).
        gc.collect()
        gc.freeze()


def start_host(name: str, judges: Sequence[tuple[JudgeSpecBase, Any]]) -> Any:
    """Start one host actor with the resources its judges ask for."""
    num_cpus = max((spec.num_cpus for spec, _ in judges), default=0.0)
    return JudgeHost.options(  # type: ignore[attr-defined]
        name=None,
        num_cpus=num_cpus,
        max_concurrency=MAX_CONCURRENCY,
    ).remote(list(judges))
