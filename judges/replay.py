"""Replay judge: votes recorded in a dataset (real judges, offline research).

The record file is a CSV with columns ``request_id, candidate_id, judge, label`` and optionally
``confidence`` and ``reason``. ``candidate_id`` is ``*`` for pairwise ballots. An empty label is
a recorded reply that could not be parsed: the judge abstains (``unparseable``) with the recorded
reason. A missing row means the judge was never asked that item: it abstains (``no_record``).

Example:
    >>> import asyncio, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.csv"
    >>> _ = p.write_text("request_id,candidate_id,judge,label\\nq,a,gpt4,reject\\n")
    >>> from consensus.types import Candidate, Request
    >>> r = Request(id="q", prompt="p", candidates=(Candidate(id="a", text="t"),))
    >>> j = ReplayJudge(ReplayJudgeSpec(name="gpt4", source=str(p)), RecordTable.load(p))
    >>> asyncio.run(j.judge(r, r.candidates[0])).label
    'reject'
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from consensus.errors import ConfigError
from consensus.files import read_text
from consensus.types import Candidate, Request, Vote
from judges.base import JudgeSpecBase, provenance, subject_of

REQUIRED_COLUMNS = ("request_id", "candidate_id", "judge", "label")
OPTIONAL_COLUMNS = ("confidence", "reason")


class ReplayJudgeSpec(JudgeSpecBase):
    """A recorded judge.

    Example:
        >>> ReplayJudgeSpec(name="GPT-4/CoT", source="votes.csv").recorded_as is None
        True
    """

    kind: Literal["replay"] = "replay"
    source: str = Field(description="CSV of recorded votes (path relative to the scenario).")
    recorded_as: str | None = Field(
        default=None, description="Judge name in the file, when it differs from `name`."
    )


@dataclass(frozen=True)
class Record:
    """One recorded vote."""

    label: str | None
    confidence: float | None
    reason: str


class RecordTable:
    """All votes of one record file, keyed by (judge, request_id, candidate_id)."""

    def __init__(self, rows: dict[tuple[str, str, str], Record], source: str):
        self.rows = rows
        self.source = source
        self.judges = frozenset(k[0] for k in rows)

    @classmethod
    def load(cls, path: str | Path) -> RecordTable:
        """Read a record CSV (UTF-8, a spreadsheet's byte-order mark and CRLF line ends are
        fine); a missing column, a short row, or a confidence that is not a number in [0, 1]
        is a ConfigError naming the file and the line."""
        path = Path(path)
        src = str(path)
        text = read_text(path, what="record CSV")
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip() for h in next(reader, [])]
        except csv.Error as exc:
            raise ConfigError(f"line 1: not a CSV header ({exc})", source=src) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ConfigError(f"missing column(s) {missing}; the header (line 1) has {header[:8]}"
                              + (" (is the file comma-separated?)" if len(header) == 1 else ""),
                              source=src)
        col = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
               if name in header}
        rows: dict[tuple[str, str, str], Record] = {}
        try:
            for row in reader:
                lineno = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) < len(header):
                    raise ConfigError(f"line {lineno}: {len(row)} field(s), the header has "
                                      f"{len(header)}", source=src)
                get = {name: row[i].strip() for name, i in col.items()}
                for name in ("request_id", "candidate_id", "judge"):
                    if not get[name]:
                        raise ConfigError(f"line {lineno}: empty {name}", source=src, field=name)
                rows[(get["judge"], get["request_id"], get["candidate_id"])] = Record(
                    get["label"] or None, _confidence(get.get("confidence"), lineno, src),
                    get.get("reason", ""))
        except csv.Error as exc:
            raise ConfigError(f"line {reader.line_num}: {exc}", source=src) from None
        return cls(rows, src)


def _confidence(raw: str | None, lineno: int, src: str) -> float | None:
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"line {lineno}: confidence {raw!r} is not a number", source=src,
                          field="confidence") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ConfigError(f"line {lineno}: confidence {raw!r} is outside [0, 1]", source=src,
                          field="confidence")
    return value


class ReplayJudge:
    """Replays the recorded votes of one judge.

    Example: see the module docstring.
    """

    def __init__(self, spec: ReplayJudgeSpec, table: RecordTable):
        self.spec = spec
        self.name = spec.name
        self.version = spec.version()
        self._key = spec.recorded_as or spec.name
        if self._key not in table.judges:
            raise ConfigError(
                f"judge {self._key!r} has no recorded vote in {table.source}",
                field=f"panel.judges[{spec.name}].recorded_as",
            )
        self._table = table

    async def judge(self, request: Request, candidate: Candidate | None) -> Vote:
        subject = subject_of(candidate)
        rec = self._table.rows.get((self._key, request.id, subject))
        common = provenance(self, request, candidate)
        if rec is None:
            return Vote.abstain(kind="no_record", reason="no recorded vote for this item",
                                **common)
        if rec.label is None or rec.label not in request.labels():
            why = rec.reason or "recorded reply could not be parsed"
            if rec.label is not None:
                why = f"recorded label {rec.label!r} not in {request.labels()}: {why}"
            return Vote.abstain(kind="unparseable", reason=why[:300], **common)
        return Vote(label=rec.label, confidence=rec.confidence, critique=rec.reason, **common)
