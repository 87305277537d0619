"""The run output directory contract, read by other tools and checks.

``summary.json`` (:class:`~consensus.types.RunSummary`; written with status ``running`` when
the run starts and rewritten at its end, ``complete`` or ``interrupted``), ``decisions.jsonl``
(one outcome per line, each with its run id, written as each decision is made), ``decisions.csv`` (one row per ballot) and ``votes.csv``
(one row per vote: request id, candidate id, judge, label, confidence, abstain reason).

Example:
    >>> import tempfile, pathlib
    >>> from consensus.types import Outcome
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with DecisionLog(d / "decisions.jsonl") as log:
    ...     log.write(Outcome(request_id="q", action="block"))
    >>> (d / "decisions.jsonl").read_text().count("\\n")
    1
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TextIO

from consensus.errors import ConfigError
from consensus.files import output_dir
from consensus.types import Outcome, RunSummary

DECISION_COLUMNS = ("request_id", "subject", "label", "probability", "strategy", "tie",
                    "quorum_met", "n_valid", "n_abstained", "margin", "entropy", "unanimous",
                    "action", "accepted_candidate", "reason")
VOTE_COLUMNS = ("request_id", "candidate_id", "judge", "label", "confidence", "abstain_kind",
                "abstain_reason", "latency_s", "cost_usd", "violations", "parse")


RUN_FILES = ("summary.json", "decisions.jsonl", "decisions.csv", "votes.csv", "report.html")
"""What one run writes into its output folder (the store may hold many runs)."""


class RunFolder:
    """An output folder owned by one run at a time.

    Entering takes an exclusive lock (``.lock``, released by the OS even if the process is
    killed), so a second run into the same folder is refused while the first is going, instead
    of the two mixing their decisions. It then removes the previous run's files, so a run
    killed half-way never leaves an old summary or report beside new decisions.

    Raises:
        ConfigError: the folder is a file, cannot be created or written, is in use, or holds
            one of ``inputs`` under the name of a file the run writes.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with RunFolder(d / "out") as folder:
        ...     folder.path.name
        'out'
    """

    def __init__(self, path: Path, *, inputs: Iterable[Path] = ()):
        self.path = path
        self.inputs = {Path(p).resolve() for p in inputs}
        self._lock: TextIO | None = None

    def __enter__(self) -> Self:
        src = str(self.path)
        clash = sorted(str(p) for p in self.inputs
                       if p.parent == self.path.resolve()
                       and p.name in (*RUN_FILES, "consensus.sqlite", ".lock"))
        if clash:
            raise ConfigError(f"the run would overwrite its own input {clash[0]}; choose another "
                              "--out", source=src, field="--out")
        output_dir(self.path)  # a file in the way, or a folder that cannot be written
        try:
            lock = (self.path / ".lock").open("a+", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write the output folder: {exc.strerror or exc}",
                              source=src, field="--out") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "another run"
            lock.close()
            raise ConfigError(f"{holder} is writing to this output folder; wait for it or "
                              "choose another --out", source=src, field="--out") from None
        self._lock = lock
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        return self

    def claim(self, run_id: str) -> None:
        """Write the holder's run id into the lock file (shown to a refused second run)."""
        if self._lock is not None:
            self._lock.seek(0)
            self._lock.truncate()
            self._lock.write(f"run {run_id} (pid {os.getpid()})")
            self._lock.flush()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


class DecisionLog:
    """Append-only JSONL of outcomes, flushed after every line."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")

    def write(self, outcome: Outcome) -> None:
        self._fh.write(outcome.model_dump_json() + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def write_summary(path: Path, summary: RunSummary) -> None:
    path.write_text(json.dumps(summary.model_dump(mode="json"), indent=2) + "\n",
                    encoding="utf-8")


def write_decisions_csv(path: Path, outcomes: Sequence[Outcome]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(DECISION_COLUMNS)
        for o in outcomes:
            for d in o.decisions:
                a = d.agreement
                w.writerow([o.request_id, d.subject, d.label or "", _num(d.probability),
                            d.strategy, d.tie, d.quorum_met, a.n_valid if a else "",
                            a.n_abstained if a else "", _num(a.margin if a else None),
                            _num(a.entropy if a else None), a.unanimous if a else "",
                            o.action, o.accepted_candidate or "", d.reason])


def write_votes_csv(path: Path, outcomes: Sequence[Outcome]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(VOTE_COLUMNS)
        for o in outcomes:
            for v in o.votes:
                w.writerow([v.request_id, v.candidate_id, v.judge, v.label or "",
                            _num(v.confidence), v.abstain_kind or "", v.abstain_reason or "",
                            f"{v.latency_s:.4f}", _num(v.cost_usd),
                            ";".join(x.principle for x in v.violations), v.parse or ""])


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"
