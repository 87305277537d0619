"""A panel in this process, without Ray: the same polls and debate rounds as
:class:`~consensus.coordinator.Panel`, on one in-process :class:`~judges.actor.JudgeHostImpl`.

For research runs on simulated panels (thousands of debates in seconds: ``benchmarks/debate.py``)
and for tests of the coordinator's logic. Calls are bounded by each judge's timeout as on a Ray
host; there is no restart or process isolation, so production runs use :class:`Panel`.

Example::

    specs = [SimulatedJudgeSpec(name=f"s{i}", default_accuracy=0.7, seed=i, conformity=1.0)
             for i in range(3)]
    coord = Coordinator(LocalPanel(specs), Debate(rounds=3))
    out = asyncio.run(coord.decide(request))
    out.deliberation.stop_reason        # "unanimity" or "rounds"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from consensus.coordinator import in_panel_order, poll_targets, recused
from consensus.types import PAIRWISE_SUBJECT, Request, Vote
from judges.actor import DebateCall, JudgeHostImpl
from judges.base import JudgeSpecBase
from judges.registry import prepare


class LocalPanel:
    """Judges built in this process (see the module docstring).

    Args:
        specs: The judges, in panel order.
        payloads: Judge name -> payload (a scenario's ``payloads``); judges without one are
            prepared from ``base_dir``.
        base_dir: Where relative paths of judge specs point.
    """

    def __init__(self, specs: Sequence[JudgeSpecBase], payloads: Mapping[str, Any] | None = None,
                 base_dir: Path = Path()):
        self.specs = list(specs)
        given = payloads or {}
        cache: dict[Any, Any] = {}
        self.host = JudgeHostImpl([(s, given[s.name] if s.name in given
                                    else prepare(s, base_dir, cache)) for s in self.specs])

    @property
    def size(self) -> int:
        return len(self.specs)

    @property
    def families(self) -> dict[str, str | None]:
        return {s.name: s.model_family() for s in self.specs}

    async def poll(self, request: Request, version: str | None = None, *,
                   skip: Mapping[tuple[str, str], str] | None = None) -> tuple[Vote, ...]:
        """As :meth:`consensus.coordinator.Panel.poll`."""
        skip = skip or {}
        calls = [(s.name, t) for t in poll_targets(request) for s in self.specs
                 if (s.name, t or PAIRWISE_SUBJECT) not in skip]
        got = await self.host.judge_batch(request, calls, version) if calls else []
        votes = {(v.judge, v.candidate_id): v for v in got}
        return in_panel_order(request, self.specs, {**votes, **recused(request, skip)})

    async def debate(self, request: Request, round: int, calls: Sequence[DebateCall],
                     version: str | None = None) -> tuple[Vote, ...]:
        """As :meth:`consensus.coordinator.Panel.debate`."""
        return tuple(await self.host.debate_batch(request, calls, round, version))
