"""The store of runs, decisions and votes: SQLite (WAL) or PostgreSQL, one transaction per decision.

A decision, all its votes and its escalation are written in one transaction as soon as the
decision is made, so a crash loses at most the decision in flight, never a recorded one. A
decision is recorded once: recording a request id again raises :class:`DuplicateDecision` and
writes nothing (an HTTP service on several replicas answers a retried request from the store).

:func:`open_store` opens either backend: a ``postgresql://`` (or ``postgres://``) DSN opens
:class:`consensus.store_pg.PgStore` (the ``postgres`` extra), anything else names an SQLite file
(:class:`Store`). Both share the schema text below, the SQL and the code of every method; a
:class:`Dialect` substitutes what differs (``REAL`` vs ``DOUBLE PRECISION``; SQLite keeps
insertion order in ``rowid``, PostgreSQL in an identity column ``seq``), and PostgreSQL's
placeholders (``%s``) replace ``?``.

The schema version lives in ``PRAGMA user_version`` (SQLite) or in the one-row table
``schema_version`` (PostgreSQL); migrations apply forward in :meth:`Store._migrate`, under a lock
(``BEGIN IMMEDIATE``; ``pg_advisory_xact_lock``) so concurrent openers of a fresh store do not
race, and a store newer than this release is refused. Version 2 adds ``escalations``: the
decisions handed to a human, pending review (the review queue reads them). A revision's or
regeneration's drafts and their votes are part of the decision's ``outcome`` JSON.

Example:
    >>> import tempfile, pathlib
    >>> s = open_store(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite")
    >>> s.ensure_run("r1", scenario="demo", strategy="majority", config={})
    >>> s.count_decisions("r1"), s.outcome("r1", "q1")
    (0, None)
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Protocol

from consensus.errors import ConfigError
from consensus.redact import redact
from consensus.types import Outcome, RunSummary

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    scenario    TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    started_at  {real} NOT NULL,
    finished_at {real},
    config      TEXT NOT NULL,
    summary     TEXT
);
CREATE TABLE IF NOT EXISTS decisions ({seq}
    run_id             TEXT NOT NULL REFERENCES runs(run_id),
    request_id         TEXT NOT NULL,
    action             TEXT NOT NULL,
    accepted_candidate TEXT,
    reason             TEXT NOT NULL,
    latency_s          {real} NOT NULL,
    cost_usd           {real} NOT NULL,
    outcome            TEXT NOT NULL,
    created_at         {real} NOT NULL,
    PRIMARY KEY (run_id, request_id)
);
CREATE TABLE IF NOT EXISTS votes ({seq}
    run_id         TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    candidate_id   TEXT NOT NULL,
    judge          TEXT NOT NULL,
    judge_version  TEXT NOT NULL,
    label          TEXT,
    confidence     {real},
    abstain_kind   TEXT,
    abstain_reason TEXT,
    latency_s      {real} NOT NULL,
    cost_usd       {real},
    tokens         INTEGER,
    vote           TEXT NOT NULL,
    PRIMARY KEY (run_id, request_id, candidate_id, judge),
    FOREIGN KEY (run_id, request_id) REFERENCES decisions(run_id, request_id)
);
CREATE INDEX IF NOT EXISTS votes_by_judge ON votes(judge);
"""
_SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS escalations (
    run_id      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    principles  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    created_at  {real} NOT NULL,
    PRIMARY KEY (run_id, request_id),
    FOREIGN KEY (run_id, request_id) REFERENCES decisions(run_id, request_id)
);
CREATE INDEX IF NOT EXISTS escalations_pending ON escalations(status, priority);
"""
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _SCHEMA), (2, _SCHEMA_2))
"""(version, script) in order; a store at version v runs the scripts of the versions above v."""

_RUN_COLUMNS = "run_id, scenario, strategy, started_at, config"
_DECISION_COLUMNS = ("run_id, request_id, action, accepted_candidate, reason, latency_s, "
                     "cost_usd, outcome, created_at")
_VOTE_COLUMNS = ("run_id, request_id, candidate_id, judge, judge_version, label, confidence, "
                 "abstain_kind, abstain_reason, latency_s, cost_usd, tokens, vote")
_ESCALATION_COLUMNS = "run_id, request_id, priority, reason, principles, status, created_at"


def _insert(table: str, columns: str, conflict: str = "") -> str:
    marks = ", ".join("?" * len(columns.split(",")))
    tail = f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else ""
    return f"INSERT INTO {table}({columns}) VALUES ({marks}){tail}"


class DuplicateDecision(Exception):
    """The run already has a decision for this request; nothing was written.

    Args:
        run_id: The run.
        request_id: The request decided before.
    """

    def __init__(self, run_id: str, request_id: str):
        self.run_id = run_id
        self.request_id = request_id
        super().__init__(f"run {run_id!r} already has a decision for request {request_id!r}")


@dataclass(frozen=True)
class Dialect:
    """What the SQL of one backend writes differently (everything else is shared)."""

    real: str = "REAL"
    """Type of the float columns."""
    seq: str = ""
    """Column definition, ending in a comma, that keeps insertion order (empty: rowid does)."""
    order: str = "rowid"
    """Expression that sorts rows in insertion order."""

    def script(self, text: str) -> list[str]:
        """The statements of a schema script, for this dialect."""
        body = text.format(real=self.real, seq=self.seq)
        return [s.strip() for s in body.split(";") if s.strip()]


SQLITE = Dialect()


class Cursor(Protocol):
    """The part of a DB-API cursor the store reads (sqlite3 and psycopg both have it)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def is_dsn(target: str | Path) -> bool:
    """Whether ``target`` is a PostgreSQL DSN (``postgresql://`` or ``postgres://``)."""
    return isinstance(target, str) and target.lower().startswith(("postgresql://", "postgres://"))


def open_store(target: str | Path) -> Store:
    """Open the store ``target`` names: a PostgreSQL DSN or an SQLite file.

    Example:
        >>> import tempfile, pathlib
        >>> type(open_store(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite")).__name__
        'Store'

    Raises:
        ConfigError: the store cannot be opened (field ``--store``; a DSN's password is never
            part of the message), or its schema is newer than this release.
    """
    if is_dsn(target):
        from consensus.store_pg import PgStore  # psycopg only when a DSN is opened

        return PgStore(str(target))
    return Store(target)


class Store:
    """The project's database: here an SQLite file (safe to open from several processes);
    :class:`consensus.store_pg.PgStore` is the same store on PostgreSQL.

    Args:
        path: SQLite file; created with its folder if absent.

    Attributes:
        name: The store as messages show it (the path; for a DSN, without its password).
        conn: The DB-API connection (``sqlite3.Connection``; ``psycopg.Connection`` for a
            ``PgStore``).
    """

    dialect: ClassVar[Dialect] = SQLITE
    conn: Any

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(self.path)
        if self.path.is_dir():
            raise ConfigError("the store is a directory; name a file (e.g. consensus.sqlite)",
                              source=self.name, field="--store")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            self._refuse(exc)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, sqlite3.Error):
                self._refuse(exc)
            raise

    def _refuse(self, exc: OSError | sqlite3.Error) -> NoReturn:
        detail = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot open the store: {detail} (is it an SQLite file, and "
                          "writable?)", source=self.name, field="--store") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ------------------------------------------------------------------ backend hooks
    # The SQL below is written once, with ``?`` placeholders; a backend overrides these.
    def _execute(self, sql: str, params: Sequence[Any] | None = ()) -> Cursor:
        return self.conn.execute(sql, params or ())

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, rows)

    def _transaction(self) -> AbstractContextManager[Any]:
        """Commits on success, rolls back on an exception."""
        return self.conn

    @contextmanager
    def _schema_lock(self) -> Iterator[int]:
        """The schema version, read and updated under a write lock (taken only when the store
        needs migrating, so an up-to-date store opens without writing)."""
        version = self._user_version()
        if version >= SCHEMA_VERSION:
            yield version
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._user_version()
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def _user_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _set_schema_version(self, version: int) -> None:
        self.conn.execute(f"PRAGMA user_version={int(version)}")

    # ------------------------------------------------------------------ shared logic
    def _migrate(self) -> None:
        with self._schema_lock() as version:
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the store has schema version {version}, newer than this release's "
                    f"{SCHEMA_VERSION}; upgrade consensus to open it",
                    source=self.name, field="--store")
            for target, script in MIGRATIONS:
                if version < target:
                    for statement in self.dialect.script(script):
                        self._execute(statement, None)
                    self._set_schema_version(target)
                    version = target

    def start_run(self, run_id: str, *, scenario: str, strategy: str, config: dict[str, Any]) -> None:
        """Record the start of a run (a run id already recorded is an error)."""
        with self._transaction():
            self._execute(_insert("runs", _RUN_COLUMNS), self._run_row(
                run_id, scenario, strategy, config))

    def ensure_run(self, run_id: str, *, scenario: str, strategy: str,
                   config: dict[str, Any]) -> None:
        """Like :meth:`start_run`, but nothing happens when the run exists (service replicas
        start the same run id; the first one's record stays)."""
        with self._transaction():
            self._execute(_insert("runs", _RUN_COLUMNS, conflict="run_id"), self._run_row(
                run_id, scenario, strategy, config))

    @staticmethod
    def _run_row(run_id: str, scenario: str, strategy: str,
                 config: dict[str, Any]) -> tuple[Any, ...]:
        return (run_id, scenario, strategy, time.time(), redact(json.dumps(config, default=str)))

    def record(self, run_id: str, outcome: Outcome) -> None:
        """Write one decision, its votes and its escalation in one transaction.

        Raises:
            DuplicateDecision: the run has a decision for this request already (also when
                another connection recorded it a moment before); nothing was written.
        """
        now = time.time()
        with self._transaction():
            cur = self._execute(
                _insert("decisions", _DECISION_COLUMNS, conflict="run_id, request_id"),
                (run_id, outcome.request_id, outcome.action, outcome.accepted_candidate,
                 outcome.reason, outcome.latency_s, outcome.cost_usd,
                 outcome.model_dump_json(exclude={"votes"}), now))
            if cur.rowcount == 0:  # the conflict clause skipped it: raising rolls back
                raise DuplicateDecision(run_id, outcome.request_id)
            if outcome.votes:
                self._executemany(_insert("votes", _VOTE_COLUMNS), [
                    (run_id, v.request_id, v.candidate_id, v.judge, v.judge_version, v.label,
                     v.confidence, v.abstain_kind, v.abstain_reason, v.latency_s, v.cost_usd,
                     v.tokens, v.model_dump_json()) for v in outcome.votes])
            esc = outcome.escalation
            if esc is not None:
                self._execute(_insert("escalations", _ESCALATION_COLUMNS), (
                    run_id, outcome.request_id, esc.priority, esc.reason,
                    json.dumps(list(esc.principles)), esc.status, now))

    def pending_escalations(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Escalated decisions awaiting review, most urgent first."""
        sql = ("SELECT run_id, request_id, priority, reason, principles FROM escalations "
               "WHERE status = 'pending'" + (" AND run_id = ?" if run_id else "")
               + " ORDER BY priority DESC, created_at")
        rows = self._execute(sql, (run_id,) if run_id else ()).fetchall()
        return [{"run_id": r, "request_id": q, "priority": p, "reason": why,
                 "principles": json.loads(pr)} for r, q, p, why, pr in rows]

    def finish_run(self, run_id: str, summary: RunSummary) -> None:
        """Record the end of a run and its summary."""
        with self._transaction():
            self._execute("UPDATE runs SET finished_at = ?, summary = ? WHERE run_id = ?",
                          (time.time(), summary.model_dump_json(), run_id))

    def count_decisions(self, run_id: str) -> int:
        """Decisions recorded for a run."""
        return int(self._execute("SELECT COUNT(*) FROM decisions WHERE run_id = ?",
                                 (run_id,)).fetchone()[0])

    def count_votes(self, run_id: str) -> int:
        """Votes recorded for a run (over all its decisions)."""
        return int(self._execute("SELECT COUNT(*) FROM votes WHERE run_id = ?",
                                 (run_id,)).fetchone()[0])

    def outcome(self, run_id: str, request_id: str) -> Outcome | None:
        """The recorded outcome of one request (votes included), or None."""
        row = self._execute("SELECT outcome FROM decisions WHERE run_id = ? AND request_id = ?",
                            (run_id, request_id)).fetchone()
        if row is None:
            return None
        votes = self._execute(
            "SELECT vote FROM votes WHERE run_id = ? AND request_id = ? "
            f"ORDER BY {self.dialect.order}", (run_id, request_id)).fetchall()
        return _outcome(row[0], [v for (v,) in votes])

    def outcomes(self, run_id: str) -> list[Outcome]:
        """Recorded outcomes of a run (votes included), in recording order."""
        order = self.dialect.order
        rows = self._execute(f"SELECT request_id, outcome FROM decisions WHERE run_id = ? "
                             f"ORDER BY {order}", (run_id,)).fetchall()
        votes: dict[str, list[str]] = {}
        for request_id, vote in self._execute(
                f"SELECT request_id, vote FROM votes WHERE run_id = ? ORDER BY {order}",
                (run_id,)).fetchall():
            votes.setdefault(request_id, []).append(vote)
        return [_outcome(blob, votes.get(request_id, [])) for request_id, blob in rows]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _outcome(blob: str, votes: list[str]) -> Outcome:
    data = json.loads(blob)
    data["votes"] = [json.loads(v) for v in votes]
    return Outcome.model_validate(data)
