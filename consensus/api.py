"""The in-process Python API: the service's panels and recording path, without HTTP.

:class:`Consensus` starts the panels of scenario files (or a service file) on Ray, as
``consensus serve`` does, and decides requests in the calling process through the same
:class:`~consensus.service.runtime.Runtime` as an HTTP replica: the same choice of panel,
strategy and policy, the same idempotent request ids, and the same store, where each decision
is committed (with its votes) before the call returns. So a decision is recorded by one path
whatever the entry: ``consensus run``, this API, or HTTP.

Example (needs Ray; the offline smoke panel)::

    with Consensus(["scenarios/safety_smoke.yaml"], store="consensus.sqlite") as c:
        out = c.decide("Say hi", ["Hello! How can I help?", "You are a worthless idiot."])
        out.action, out.accepted_candidate   # ('accept', 'c1')
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from consensus.types import Candidate, Outcome, Request, TaskKind


class Consensus:
    """Panels in process (see the module docstring).

    Args:
        files: Scenario YAML files (a panel each) or one service YAML.
        store: SQLite file or ``postgresql://`` DSN (default: the user's data directory).
        address: Ray cluster to join (``auto`` or ``host:port``; default: a local Ray).
    """

    def __init__(self, files: Sequence[str | Path], *, store: str | None = None,
                 address: str | None = None):
        from consensus.runner import ensure_ray
        from consensus.service.config import load_service
        from consensus.service.runtime import Runtime
        from consensus.service.serve import start_panels

        self.config = load_service(files, store=store)
        ensure_ray(address)
        self.panels: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()  # one loop for every sync call (sessions live on it)
        try:
            start_panels(self.config, self.panels, address=address)
            self.runtime = Runtime(self.config, self.panels)
        except BaseException:
            self._stop_panels()
            raise

    async def adecide(self, prompt: str, candidates: Sequence[str | Mapping[str, Any]], *,
                      id: str | None = None, task: TaskKind = "verdict",
                      panel: str | None = None, strategy: str | None = None,
                      policy: str | None = None) -> Outcome:
        """Decide one request and commit it; a recorded ``id`` returns its recorded outcome."""
        rt = self.runtime
        choice = rt.choose(None, panel, strategy, policy)
        rid = id or uuid.uuid4().hex
        if id is not None and (recorded := await rt.stored(choice, rid)) is not None:
            return recorded
        cands = tuple(Candidate(id=f"c{i + 1}", text=c) if isinstance(c, str) else
                      Candidate.model_validate({"id": f"c{i + 1}", **c})
                      for i, c in enumerate(candidates))
        outcome, _ = await rt.decide(choice, Request(id=rid, prompt=prompt, task=task,
                                                     candidates=cands))
        return outcome

    def decide(self, prompt: str, candidates: Sequence[str | Mapping[str, Any]],
               **kwargs: Any) -> Outcome:
        """:meth:`adecide` from synchronous code (not from inside a running event loop)."""
        return self._loop.run_until_complete(self.adecide(prompt, candidates, **kwargs))

    def close(self) -> None:
        """Close the store and stop the judge hosts."""
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            runtime.close()
        self._stop_panels()
        self._loop.close()

    def _stop_panels(self) -> None:
        for p in self.panels.values():
            p.shutdown()
        self.panels.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
