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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from consensus.errors import ConfigError
from consensus.files import read_text
from consensus.types import VERDICT_LABELS, Candidate, Request, Vote
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
        fine). A ConfigError names the file, the line and the problem for: a missing or
        duplicated column; a row with fewer or more fields than the header; malformed quoting
        (an unclosed quote is reported at the line where the quoted field started); a line break
        inside an id, judge, label or confidence; an empty id or judge; a confidence that is not
        a number in [0, 1]; and a (judge, request_id, candidate_id) recorded twice."""
        path = Path(path)
        src = str(path)
        text = read_text(path, what="record CSV")
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = [h.strip() for h in next(reader, [])]
        except csv.Error as exc:
            raise ConfigError(f"line 1: not a CSV header ({exc}; is a quote unclosed?)",
                              source=src) from None
        if reader.line_num > 1:
            raise ConfigError(f"line 1: the header spans lines 1-{reader.line_num} (is a quote "
                              "unclosed?)", source=src)
        dup = [h for h, n in Counter(h for h in header if h).items() if n > 1]
        if dup:
            raise ConfigError(f"line 1: duplicated column(s) {dup} in the header {header[:8]}",
                              source=src, field=dup[0])
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ConfigError(f"missing column(s) {missing}; the header (line 1) has {header[:8]}"
                              + (" (is the file comma-separated?)" if len(header) == 1 else ""),
                              source=src)
        col = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
               if name in header}
        rows: dict[tuple[str, str, str], Record] = {}
        first_line: dict[tuple[str, str, str], int] = {}
        while True:
            lineno = reader.line_num + 1  # where the next row starts
            try:
                row = next(reader, None)
            except csv.Error as exc:
                span = (f" (the row read on to line {reader.line_num}: a quote opened at line "
                        f"{lineno} is probably not closed)" if reader.line_num > lineno else "")
                raise ConfigError(f"line {lineno}: malformed CSV: {exc}{span}",
                                  source=src) from None
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ConfigError(f"line {lineno}: {len(row)} field{'s' * (len(row) != 1)}, the "
                                  f"header has {len(header)}"
                                  + (" (is a comma in a field unquoted?)"
                                     if len(row) > len(header) else ""), source=src)
            get = {name: row[i].strip() for name, i in col.items()}
            for name in ("request_id", "candidate_id", "judge", "label", "confidence"):
                if "\n" in get.get(name, "") or "\r" in get.get(name, ""):
                    raise ConfigError(
                        f"line {lineno}: the {name} field spans lines {lineno}-{reader.line_num}"
                        " (a quote opened at this line is probably not closed)",
                        source=src, field=name)
            for name in ("request_id", "candidate_id", "judge"):
                if not get[name]:
                    raise ConfigError(f"line {lineno}: empty {name}", source=src, field=name)
            swallowed = _swallowed_record(row, header, col, get["judge"])
            if swallowed:
                raise ConfigError(
                    f"line {lineno}: a field spans lines {lineno}-{reader.line_num} and its line "
                    f"{swallowed!r} looks like a record (a quote opened at line {lineno} is "
                    "probably not closed)", source=src)
            key = (get["judge"], get["request_id"], get["candidate_id"])
            if key in first_line:
                raise ConfigError(
                    f"line {lineno} repeats the record of line {first_line[key]} (judge "
                    f"{key[0]!r}, request_id {key[1]!r}, candidate_id {key[2]!r})", source=src)
            first_line[key] = lineno
            rows[key] = Record(get["label"] or None,
                               _confidence(get.get("confidence"), lineno, src),
                               get.get("reason", ""))
        return cls(rows, src)


def _swallowed_record(row: list[str], header: list[str], col: dict[str, int],
                      judge: str) -> str | None:
    """A line inside a multi-line field that reads as a record of the same judge (a row
    swallowed by an unclosed quote), or None."""
    for cell in row:
        if "\n" not in cell and "\r" not in cell:
            continue
        for line in cell.splitlines()[1:]:
            fields = next(csv.reader([line.rstrip('"')]), [])
            if len(fields) == len(header) and fields[col["judge"]].strip() == judge \
                    and fields[col["request_id"]].strip():
                return line[:80]
    return None


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
        label = recorded_label(rec, request)
        if label is None:
            why = rec.reason or "recorded reply could not be parsed"
            if rec.label is not None:
                why = f"recorded label {rec.label!r} not in {request.labels()}: {why}"
            return Vote.abstain(kind="unparseable", reason=why[:300], **common)
        return Vote(label=label, confidence=rec.confidence, critique=rec.reason, **common)


def recorded_label(rec: Record, request: Request) -> str | None:
    """The label of a record in the request's label space, or None (empty or foreign label).

    A verdict label is read case- and whitespace-insensitively (``' ACCEPT '`` is ``accept``);
    a pairwise label is a candidate id and must match exactly.

    Example:
        >>> from consensus.types import Candidate, Request
        >>> r = Request(id="q", prompt="p", candidates=(Candidate(id="a", text="t"),))
        >>> recorded_label(Record("Reject", None, ""), r)
        'reject'
    """
    if rec.label is None:
        return None
    labels = request.labels()
    if rec.label in labels:
        return rec.label
    if request.task != "pairwise":
        folded = rec.label.strip().lower()
        if folded in VERDICT_LABELS and folded in labels:
            return folded
    return None


def usable_votes(table: RecordTable, judge_name: str, requests: Iterable[Request]) -> int:
    """How many recorded votes of ``judge_name`` (its name in the file) a replay of
    ``requests`` would use: the request id and subject (candidate id, or ``'*'`` for a pairwise
    request) exist and the label is in that request's label space (see :func:`recorded_label`).

    Example:
        >>> import tempfile, pathlib
        >>> from consensus.types import Candidate, Request
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.csv"
        >>> _ = p.write_text("request_id,candidate_id,judge,label\\nq,a,gpt4,ACCEPT\\n"
        ...                  "q,b,gpt4,accept\\nz,a,gpt4,accept\\n")
        >>> r = Request(id="q", prompt="p", candidates=(Candidate(id="a", text="t"),))
        >>> usable_votes(RecordTable.load(p), "gpt4", [r])
        1
    """
    by_id = {r.id: r for r in requests}
    count = 0
    for r in by_id.values():
        for subject in r.subjects():
            rec = table.rows.get((judge_name, r.id, subject))
            if rec is not None and recorded_label(rec, r) is not None:
                count += 1
    return count
