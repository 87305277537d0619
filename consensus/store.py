"""The store: runs, requests, decisions, votes, drafts, the review queue, reviews, preference
pairs and judge competences. SQLite (WAL) or PostgreSQL; one transaction per decision.

A decision is written with its request and candidates, all its votes, its drafts
(``interventions``) and its escalation in one transaction as soon as it is made, so a crash
(even SIGKILL) loses at most the decision in flight, never a recorded one, and never leaves one
half written. A decision is recorded once: recording a request id again raises
:class:`DuplicateDecision` and writes nothing (an HTTP service on several replicas answers a
retried request from the store; ``consensus run --resume`` skips :meth:`Store.decided_ids`).

:func:`open_store` opens either backend: a ``postgresql://`` (or ``postgres://``) DSN opens
:class:`consensus.store_pg.PgStore` (the ``postgres`` extra), anything else names an SQLite file
(:class:`Store`). Both share the schema text below, the SQL and the code of every method; a
:class:`Dialect` substitutes what differs (``REAL`` vs ``DOUBLE PRECISION``; SQLite keeps
insertion order in ``rowid``, PostgreSQL in an identity column ``seq``), and PostgreSQL's
placeholders (``%s``) replace ``?``.

The schema version lives in ``PRAGMA user_version`` (SQLite) or in the one-row table
``schema_version`` (PostgreSQL); :data:`MIGRATIONS` apply forward in :meth:`Store._migrate`,
under a lock (``BEGIN IMMEDIATE``; ``pg_advisory_xact_lock``) so concurrent openers of a fresh
store do not race, and a store newer than this release is refused with a message naming it.
Version 2 added ``escalations`` (the review queue); version 3 adds ``requests``,
``candidates``, ``interventions``, claims on escalations, ``reviews``, ``preferences``,
``competence`` and ``competence_history``, and a run's scenario fingerprint (for resume).

The review queue: :meth:`Store.claim` hands the most urgent unclaimed item to one reviewer
only (SQLite: an immediate transaction; PostgreSQL: ``FOR UPDATE SKIP LOCKED``);
:meth:`Store.submit_review` is accepted from the claimer only and writes, in the same
transaction, the preference pairs the review implies; :meth:`Store.undo_review` takes back a
reviewer's last review. docs/store.md describes every table.

Example:
    >>> import tempfile, pathlib
    >>> s = open_store(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite")
    >>> s.ensure_run("r1", scenario="demo", strategy="majority", config={})
    >>> s.count_decisions("r1"), s.outcome("r1", "q1"), s.claim("ana")
    (0, None, None)
"""
from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn, Protocol, get_args

from consensus.errors import ConfigError
from consensus.redact import redact
from consensus.types import Outcome, Request, RunSummary

SCHEMA_VERSION = 3
BUSY_TIMEOUT = 30.0  # seconds an SQLite connection waits for another writer
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
_SCHEMA_3 = """
ALTER TABLE runs ADD COLUMN fingerprint TEXT;
ALTER TABLE escalations ADD COLUMN claimed_by TEXT;
ALTER TABLE escalations ADD COLUMN claimed_at {real};
CREATE TABLE IF NOT EXISTS requests (
    run_id      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    meta        TEXT NOT NULL,
    created_at  {real} NOT NULL,
    PRIMARY KEY (run_id, request_id),
    FOREIGN KEY (run_id, request_id) REFERENCES decisions(run_id, request_id)
);
CREATE TABLE IF NOT EXISTS candidates ({seq}
    run_id        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    candidate_id  TEXT NOT NULL,
    text          TEXT NOT NULL,
    generator     TEXT,
    PRIMARY KEY (run_id, request_id, candidate_id),
    FOREIGN KEY (run_id, request_id) REFERENCES requests(run_id, request_id)
);
CREATE TABLE IF NOT EXISTS interventions (
    run_id      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    step        INTEGER NOT NULL,
    draft_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    parent      TEXT,
    source      TEXT NOT NULL,
    text        TEXT NOT NULL,
    accepted    INTEGER NOT NULL,
    votes       TEXT NOT NULL,
    PRIMARY KEY (run_id, request_id, step),
    FOREIGN KEY (run_id, request_id) REFERENCES decisions(run_id, request_id)
);
CREATE TABLE IF NOT EXISTS reviews (
    review_id   {ident},
    run_id      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    reviewer    TEXT NOT NULL,
    verdict     TEXT NOT NULL CHECK (verdict IN ('accept', 'reject', 'prefer', 'revise')),
    chosen      TEXT,
    revision    TEXT,
    note        TEXT NOT NULL,
    created_at  {real} NOT NULL,
    undone      INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (run_id, request_id) REFERENCES escalations(run_id, request_id)
);
CREATE INDEX IF NOT EXISTS reviews_by_reviewer ON reviews(reviewer, undone);
CREATE TABLE IF NOT EXISTS preferences (
    pref_id     {ident},
    run_id      TEXT,
    request_id  TEXT,
    prompt      TEXT NOT NULL,
    chosen      TEXT NOT NULL,
    rejected    TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('revision', 'pairwise', 'review')),
    meta        TEXT NOT NULL,
    created_at  {real} NOT NULL,
    review_id   BIGINT REFERENCES reviews(review_id),
    CHECK (chosen <> rejected)
);
CREATE INDEX IF NOT EXISTS preferences_by_time ON preferences(created_at);
CREATE TABLE IF NOT EXISTS competence (
    judge       TEXT NOT NULL,
    label       TEXT NOT NULL,
    alpha       {real} NOT NULL,
    beta        {real} NOT NULL,
    updated_at  {real} NOT NULL,
    PRIMARY KEY (judge, label)
);
CREATE TABLE IF NOT EXISTS competence_history (
    seq         {ident},
    judge       TEXT NOT NULL,
    label       TEXT NOT NULL,
    alpha       {real} NOT NULL,
    beta        {real} NOT NULL,
    review_id   BIGINT,
    at          {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS competence_history_by_review ON competence_history(review_id);
"""
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _SCHEMA), (2, _SCHEMA_2), (3, _SCHEMA_3))
"""(version, script) in order; a store at version v runs the scripts of the versions above v."""

Verdict = Literal["accept", "reject", "prefer", "revise"]
"""What a reviewer says about an escalated decision."""
PreferenceSource = Literal["revision", "pairwise", "review"]
"""Where a preference pair comes from."""
EscalationStatus = Literal["pending", "claimed", "reviewed"]
VERDICTS: tuple[str, ...] = get_args(Verdict)
SOURCES: tuple[str, ...] = get_args(PreferenceSource)

_RUN_COLUMNS = "run_id, scenario, strategy, started_at, config, fingerprint"
_DECISION_COLUMNS = ("run_id, request_id, action, accepted_candidate, reason, latency_s, "
                     "cost_usd, outcome, created_at")
_VOTE_COLUMNS = ("run_id, request_id, candidate_id, judge, judge_version, label, confidence, "
                 "abstain_kind, abstain_reason, latency_s, cost_usd, tokens, vote")
_ESCALATION_COLUMNS = "run_id, request_id, priority, reason, principles, status, created_at"
_REQUEST_COLUMNS = "run_id, request_id, prompt, meta, created_at"
_CANDIDATE_COLUMNS = "run_id, request_id, candidate_id, text, generator"
_INTERVENTION_COLUMNS = ("run_id, request_id, step, draft_id, kind, parent, source, text, "
                         "accepted, votes")
_REVIEW_COLUMNS = "run_id, request_id, reviewer, verdict, chosen, revision, note, created_at"
_PREFERENCE_COLUMNS = ("run_id, request_id, prompt, chosen, rejected, source, meta, created_at, "
                       "review_id")
_QUEUE_COLUMNS = "run_id, request_id, priority, reason, principles, status, claimed_by, claimed_at"
_QUEUE_ORDER = "priority DESC, created_at, run_id, request_id"


def _insert(table: str, columns: str, conflict: str = "", returning: str = "") -> str:
    marks = ", ".join("?" * len(columns.split(",")))
    tail = f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else ""
    tail += f" RETURNING {returning}" if returning else ""
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


class ReviewError(Exception):
    """A review action the store refused; nothing was written.

    Args:
        message: What is wrong, in a sentence.
        code: ``unknown`` (no such escalated item or review: HTTP 404), ``claimed`` (someone
            else holds it, or it is not claimed by this reviewer, or not the reviewer's last
            review: 409) or ``invalid`` (a bad verdict, candidate or revision: 400).

    Example:
        >>> ReviewError("no such item", code="unknown").code
        'unknown'
    """

    def __init__(self, message: str, *, code: Literal["unknown", "claimed", "invalid"]):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Dialect:
    """What the SQL of one backend writes differently (everything else is shared)."""

    real: str = "REAL"
    """Type of the float columns."""
    seq: str = ""
    """Column definition, ending in a comma, that keeps insertion order (empty: rowid does)."""
    order: str = "rowid"
    """Expression that sorts rows in insertion order."""
    ident: str = "INTEGER PRIMARY KEY AUTOINCREMENT"
    """An integer key the database assigns, increasing, never reused."""
    skip_locked: str = ""
    """Appended to the claim's inner SELECT: rows another transaction holds are skipped (SQLite
    needs none: ``BEGIN IMMEDIATE`` serialises writers)."""

    def script(self, text: str) -> list[str]:
        """The statements of a schema script, for this dialect."""
        body = text.format(real=self.real, seq=self.seq, ident=self.ident)
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


def default_store_path() -> Path:
    """Where ``consensus run`` keeps its store when ``--store`` names none: ``consensus.sqlite``
    in the user's data directory (``platformdirs``; on Linux ``$XDG_DATA_HOME/consensus``, by
    default ``~/.local/share/consensus``). Read at call time, never at import.

    Example:
        >>> default_store_path().name
        'consensus.sqlite'
    """
    from platformdirs import user_data_dir

    return Path(user_data_dir("consensus", appauthor=False)) / "consensus.sqlite"


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


def _timestamp(value: float | str | datetime | None, name: str) -> float | None:
    """Seconds since the epoch from a number, an aware or naive (local) datetime or ISO text."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name}: not an ISO date or time: {value!r}") from None
    return value.timestamp()


def _positive_count(x: float, name: str) -> float:
    x = float(x)
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite count >= 0, got {x!r}")
    return x


class Store:
    """The project's database: here an SQLite file (safe to open from several processes);
    :class:`consensus.store_pg.PgStore` is the same store on PostgreSQL.

    Args:
        path: SQLite file; created with its folder if absent.

    Attributes:
        name: The store as messages show it (the path; for a DSN, without its password).
        conn: The DB-API connection (``sqlite3.Connection``; ``psycopg.Connection`` for a
            ``PgStore``). One store object serves one thread: open one per thread.
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
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT)
        except (OSError, sqlite3.Error) as exc:
            self._refuse(exc)
        try:
            self._write_ahead_log()
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, sqlite3.Error):
                self._refuse(exc)
            raise

    def _write_ahead_log(self, wait: float = BUSY_TIMEOUT) -> None:
        """Switch the file to WAL mode (it stays so), waiting for other connections.

        SQLite does not call its busy handler for a change of journal mode: two processes
        opening a new store at the same moment made one fail with "database is locked" (a third
        of 300 tries here). The mode is read first (a store already in WAL needs no lock), and
        the change is retried with a growing pause until ``wait`` seconds have passed."""
        if str(self.conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        deadline, pause = time.monotonic() + wait, 0.005
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)

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

    def _locked(self) -> AbstractContextManager[Any]:
        """A transaction that holds the write lock from its first statement (reads inside it
        see what no other writer can change before it commits)."""
        return self._immediate()

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

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

    # ------------------------------------------------------------------ runs
    def start_run(self, run_id: str, *, scenario: str, strategy: str, config: dict[str, Any],
                  fingerprint: str | None = None) -> None:
        """Record the start of a run (a run id already recorded is an error); ``fingerprint``
        identifies its inputs, so ``--resume`` can tell a changed scenario."""
        with self._transaction():
            self._execute(_insert("runs", _RUN_COLUMNS), self._run_row(
                run_id, scenario, strategy, config, fingerprint))

    def ensure_run(self, run_id: str, *, scenario: str, strategy: str,
                   config: dict[str, Any], fingerprint: str | None = None) -> None:
        """Like :meth:`start_run`, but nothing happens when the run exists (service replicas
        start the same run id; the first one's record stays)."""
        with self._transaction():
            self._execute(_insert("runs", _RUN_COLUMNS, conflict="run_id"), self._run_row(
                run_id, scenario, strategy, config, fingerprint))

    @staticmethod
    def _run_row(run_id: str, scenario: str, strategy: str, config: dict[str, Any],
                 fingerprint: str | None) -> tuple[Any, ...]:
        return (run_id, scenario, strategy, time.time(), redact(json.dumps(config, default=str)),
                fingerprint)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run: run_id, scenario, strategy, started_at, finished_at, status (``complete``,
        ``interrupted``, or ``running`` when it never finished: killed, or still going),
        fingerprint, decided (its decisions); None when unknown."""
        found = self.runs(run_id=run_id)
        return found[0] if found else None

    def runs(self, *, scenario: str | None = None,
             run_id: str | None = None) -> list[dict[str, Any]]:
        """Runs (of ``scenario``, or the one ``run_id``), latest first; see :meth:`run`."""
        where, params = _where(("scenario", scenario), ("r.run_id", run_id))
        rows = self._execute(
            "SELECT r.run_id, r.scenario, r.strategy, r.started_at, r.finished_at, r.summary, "
            "r.fingerprint, (SELECT COUNT(*) FROM decisions d WHERE d.run_id = r.run_id) "
            f"FROM runs r{where} ORDER BY r.started_at DESC, r.run_id DESC", params).fetchall()
        return [{"run_id": rid, "scenario": sc, "strategy": st, "started_at": t0,
                 "finished_at": t1,
                 "status": json.loads(summary).get("status", "complete") if summary else "running",
                 "fingerprint": fp, "decided": int(n)}
                for rid, sc, st, t0, t1, summary, fp, n in rows]

    def reopen_run(self, run_id: str) -> None:
        """Mark a run as going again (a resumed run): its end and summary are cleared until
        :meth:`finish_run` writes them anew."""
        with self._transaction():
            self._execute("UPDATE runs SET finished_at = NULL, summary = NULL WHERE run_id = ?",
                          (run_id,))

    def finish_run(self, run_id: str, summary: RunSummary) -> None:
        """Record the end of a run and its summary."""
        with self._transaction():
            self._execute("UPDATE runs SET finished_at = ?, summary = ? WHERE run_id = ?",
                          (time.time(), summary.model_dump_json(), run_id))

    # ------------------------------------------------------------------ decisions
    def record(self, run_id: str, outcome: Outcome, request: Request | None = None) -> None:
        """Write one decision, its votes, its drafts (``interventions``), its escalation and,
        given ``request``, its prompt and candidates, in one transaction.

        Raises:
            DuplicateDecision: the run has a decision for this request already (also when
                another connection recorded it a moment before); nothing was written.
            ValueError: ``request`` is another request than the outcome's.
        """
        if request is not None and request.id != outcome.request_id:
            raise ValueError(f"the outcome is of request {outcome.request_id!r}, the request "
                             f"given is {request.id!r}")
        now = time.time()
        rid = outcome.request_id
        with self._transaction():
            cur = self._execute(
                _insert("decisions", _DECISION_COLUMNS, conflict="run_id, request_id"),
                (run_id, rid, outcome.action, outcome.accepted_candidate,
                 outcome.reason, outcome.latency_s, outcome.cost_usd,
                 outcome.model_dump_json(exclude={"votes"}), now))
            if cur.rowcount == 0:  # the conflict clause skipped it: raising rolls back
                raise DuplicateDecision(run_id, rid)
            if outcome.votes:
                self._executemany(_insert("votes", _VOTE_COLUMNS), [
                    (run_id, v.request_id, v.candidate_id, v.judge, v.judge_version, v.label,
                     v.confidence, v.abstain_kind, v.abstain_reason, v.latency_s, v.cost_usd,
                     v.tokens, v.model_dump_json()) for v in outcome.votes])
            if request is not None:
                self._execute(_insert("requests", _REQUEST_COLUMNS), (
                    run_id, rid, request.prompt, json.dumps(_request_meta(request)), now))
                self._executemany(_insert("candidates", _CANDIDATE_COLUMNS), [
                    (run_id, rid, c.id, c.text, c.generator) for c in request.candidates])
            if outcome.drafts:
                self._executemany(_insert("interventions", _INTERVENTION_COLUMNS), [
                    (run_id, rid, step, d.id, d.kind, d.parent, d.source, d.text, int(d.accepted),
                     json.dumps([v.model_dump(mode="json") for v in d.votes]))
                    for step, d in enumerate(outcome.drafts, start=1)])
            esc = outcome.escalation
            if esc is not None:
                self._execute(_insert("escalations", _ESCALATION_COLUMNS), (
                    run_id, rid, esc.priority, esc.reason,
                    json.dumps(list(esc.principles)), esc.status, now))

    def decided_ids(self, run_id: str) -> set[str]:
        """The request ids the run has a committed decision for (what a resumed run skips)."""
        return {r for (r,) in self._execute("SELECT request_id FROM decisions WHERE run_id = ?",
                                            (run_id,)).fetchall()}

    def request_row(self, run_id: str, request_id: str) -> dict[str, Any] | None:
        """The recorded request: ``{prompt, meta, candidates: [{id, text, generator}]}`` (meta:
        task, category, prompt_safe, gold, metadata), or None when it was recorded without its
        request (a store before version 3, or a caller that passed none)."""
        row = self._execute("SELECT prompt, meta FROM requests WHERE run_id = ? AND "
                            "request_id = ?", (run_id, request_id)).fetchone()
        if row is None:
            return None
        cands = self._execute(
            "SELECT candidate_id, text, generator FROM candidates WHERE run_id = ? AND "
            f"request_id = ? ORDER BY {self.dialect.order}", (run_id, request_id)).fetchall()
        return {"prompt": row[0], "meta": json.loads(row[1]),
                "candidates": [{"id": c, "text": t, "generator": g} for c, t, g in cands]}

    def interventions(self, run_id: str, request_id: str | None = None) -> list[dict[str, Any]]:
        """The drafts recorded for a run (or one request), in order: run_id, request_id, step,
        draft_id, kind, parent, source, text, accepted, votes (list of vote dicts)."""
        where, params = _where(("run_id", run_id), ("request_id", request_id))
        rows = self._execute(f"SELECT {_INTERVENTION_COLUMNS} FROM interventions{where} "
                             "ORDER BY run_id, request_id, step", params).fetchall()
        keys = [k.strip() for k in _INTERVENTION_COLUMNS.split(",")]
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for d in out:
            d["accepted"], d["votes"] = bool(d["accepted"]), json.loads(d["votes"])
        return out

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

    # ------------------------------------------------------------------ the review queue
    def pending_escalations(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Escalated decisions awaiting review, most urgent first (version 2's view; see
        :meth:`queue`)."""
        sql = ("SELECT run_id, request_id, priority, reason, principles FROM escalations "
               "WHERE status = 'pending'" + (" AND run_id = ?" if run_id else "")
               + f" ORDER BY {_QUEUE_ORDER}")
        rows = self._execute(sql, (run_id,) if run_id else ()).fetchall()
        return [{"run_id": r, "request_id": q, "priority": p, "reason": why,
                 "principles": json.loads(pr)} for r, q, p, why, pr in rows]

    def queue(self, run_id: str | None = None, status: str | None = "pending",
              limit: int = 100) -> list[dict[str, Any]]:
        """Escalated items with ``status`` (pending, claimed, reviewed; None: all), most urgent
        first: run_id, request_id, priority, reason, principles, status, claimed_by,
        claimed_at."""
        if status is not None and status not in get_args(EscalationStatus):
            raise ValueError(f"status is one of {get_args(EscalationStatus)}, got {status!r}")
        where, params = _where(("run_id", run_id), ("status", status))
        rows = self._execute(f"SELECT {_QUEUE_COLUMNS} FROM escalations{where} "
                             f"ORDER BY {_QUEUE_ORDER} LIMIT ?",
                             (*params, int(limit))).fetchall()
        return [_queue_item(r) for r in rows]

    def escalation(self, run_id: str, request_id: str) -> dict[str, Any] | None:
        """One escalated item (as :meth:`queue` gives it, whatever its status), or None."""
        row = self._execute(f"SELECT {_QUEUE_COLUMNS} FROM escalations WHERE run_id = ? AND "
                            "request_id = ?", (run_id, request_id)).fetchone()
        return None if row is None else _queue_item(row)

    def claim(self, reviewer: str, run_id: str | None = None,
              request_id: str | None = None) -> dict[str, Any] | None:
        """Claim an item for ``reviewer``: the one named (``run_id`` and ``request_id``), else
        the most urgent pending one (of ``run_id``, if given). One statement claims it, so two
        reviewers never get the same item; claiming an item one holds already returns it again.

        Returns:
            The claimed item (as in :meth:`queue`), or None: nothing pending is left, or the
            named item is not pending (another reviewer holds it, or it was reviewed; see
            :meth:`escalation`).

        Example:
            >>> import tempfile, pathlib
            >>> open_store(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite").claim("ann") is None
            True
        """
        if not reviewer:
            raise ValueError("a claim names its reviewer")
        if request_id is not None and run_id is None:
            runs = {r for (r,) in self._execute(
                "SELECT run_id FROM escalations WHERE request_id = ?", (request_id,)).fetchall()}
            if len(runs) != 1:
                return None if not runs else self._ambiguous(request_id, runs)
            run_id = runs.pop()
        now = time.time()
        sets = "UPDATE escalations SET status = 'claimed', claimed_by = ?, claimed_at = ? WHERE "
        if request_id is not None:
            sql = (sets + "run_id = ? AND request_id = ? AND (status = 'pending' OR "
                   f"(status = 'claimed' AND claimed_by = ?)) RETURNING {_QUEUE_COLUMNS}")
            params: tuple[Any, ...] = (reviewer, now, run_id, request_id, reviewer)
        else:
            inner, inner_params = _where(("status", "pending"), ("run_id", run_id))
            sql = (sets + "status = 'pending' AND (run_id, request_id) = (SELECT run_id, "
                   f"request_id FROM escalations{inner} ORDER BY {_QUEUE_ORDER} LIMIT 1"
                   f"{self.dialect.skip_locked}) RETURNING {_QUEUE_COLUMNS}")
            params = (reviewer, now, *inner_params)
        for _ in range(5):  # PostgreSQL: a row claimed between the SELECT and the UPDATE
            with self._transaction():
                rows = self._execute(sql, params).fetchall()
            if rows or request_id is not None or not self.queue(run_id, limit=1):
                break
        return _queue_item(rows[0]) if rows else None

    @staticmethod
    def _ambiguous(request_id: str, runs: set[str]) -> NoReturn:
        raise ReviewError(f"request {request_id!r} is escalated in several runs "
                          f"({', '.join(sorted(runs))}); name the run", code="invalid")

    def release(self, run_id: str, request_id: str, reviewer: str) -> bool:
        """Give a claimed item back to the queue (pending); only its claimer can. Returns
        whether it was released."""
        with self._transaction():
            cur = self._execute(
                "UPDATE escalations SET status = 'pending', claimed_by = NULL, claimed_at = NULL "
                "WHERE run_id = ? AND request_id = ? AND status = 'claimed' AND claimed_by = ?",
                (run_id, request_id, reviewer))
            return cur.rowcount > 0

    def submit_review(self, run_id: str, request_id: str, reviewer: str, verdict: str, *,
                      chosen: str | None = None, revision: str | None = None,
                      note: str = "") -> int:
        """Record ``reviewer``'s verdict on an item they claimed; it becomes ``reviewed``, and
        the preference pairs the review implies are written in the same transaction (module
        :func:`review_pairs`). Nothing else is called (competences are the caller's).

        Args:
            verdict: accept or reject (``chosen``: the candidate, by default the delivered or
                the only one), prefer (``chosen``: the better candidate) or revise
                (``revision``: the reviewer's text; ``chosen``: the candidate or draft it
                revises, by default the delivered one).

        Returns:
            The review id.

        Raises:
            ReviewError: not claimed by ``reviewer`` (``claimed``), no such item
                (``unknown``), or a bad verdict, candidate or revision (``invalid``).
        """
        if verdict not in VERDICTS:
            raise ReviewError(f"verdict is one of {', '.join(VERDICTS)}, got {verdict!r}",
                              code="invalid")
        if verdict == "prefer" and not chosen:
            raise ReviewError("prefer names the chosen candidate", code="invalid")
        if verdict == "revise" and not (revision and revision.strip()):
            raise ReviewError("revise needs the revised text", code="invalid")
        now = time.time()
        with self._locked():
            cur = self._execute(
                "UPDATE escalations SET status = 'reviewed' WHERE run_id = ? AND request_id = ? "
                "AND status = 'claimed' AND claimed_by = ?", (run_id, request_id, reviewer))
            if cur.rowcount == 0:
                self._not_claimed(run_id, request_id, reviewer)
            item = self._review_item(run_id, request_id)
            texts = {c["id"] for c in item["candidates"]} | {d["id"] for d in item["drafts"]}
            if chosen is not None and item["candidates"] and chosen not in texts:
                raise ReviewError(f"request {request_id!r} has no candidate {chosen!r}",
                                  code="invalid")
            (review_id,) = self._execute(
                _insert("reviews", _REVIEW_COLUMNS, returning="review_id"),
                (run_id, request_id, reviewer, verdict, chosen, revision, note, now)).fetchall()[0]
            pairs = review_pairs(item, verdict, chosen=chosen, revision=revision)
            self._insert_preferences([
                (run_id, request_id, item["prompt"], good, bad, "review",
                 json.dumps({**meta, "verdict": verdict, "reviewer": reviewer, "note": note}),
                 now, int(review_id)) for good, bad, meta in pairs])
        return int(review_id)

    def _not_claimed(self, run_id: str, request_id: str, reviewer: str) -> NoReturn:
        item = self.escalation(run_id, request_id)
        if item is None:
            raise ReviewError(f"no escalated item {run_id}/{request_id}", code="unknown")
        holder = item["claimed_by"]
        why = (f"it is {item['status']}" if holder is None else
               f"it is {item['status']} by {holder}")
        raise ReviewError(f"{reviewer} has not claimed {run_id}/{request_id}: {why}",
                          code="claimed")

    def _review_item(self, run_id: str, request_id: str) -> dict[str, Any]:
        """What :func:`review_pairs` reads: prompt, candidates with the panel's verdicts, and
        the drafts."""
        req = self.request_row(run_id, request_id) or {"prompt": "", "candidates": []}
        row = self._execute("SELECT outcome FROM decisions WHERE run_id = ? AND request_id = ?",
                            (run_id, request_id)).fetchone()
        blob = json.loads(row[0]) if row else {}
        verdicts = panel_verdicts(blob, [c["id"] for c in req["candidates"]])
        return {"prompt": req["prompt"],
                "accepted_candidate": blob.get("accepted_candidate"),
                "delivered_draft": blob.get("delivered_draft"),
                "candidates": [{**c, "panel": verdicts.get(c["id"])} for c in req["candidates"]],
                "drafts": [{"id": d["id"], "text": d.get("text", ""), "parent": d.get("parent"),
                            "panel": "accept" if d.get("accepted") else "reject"}
                           for d in blob.get("drafts", ()) if d.get("text")]}

    def undo_review(self, review_id: int, reviewer: str) -> None:
        """Undo ``reviewer``'s last live review (only that one): it is marked undone, its
        preference pairs and its competence history rows are deleted (each competence it
        changed goes back to its latest remaining history row, or away when none is left), and
        the item is claimed by the reviewer again.

        Raises:
            ReviewError: no such review (``unknown``), or it is not the reviewer's last live
                review (``claimed``).
        """
        with self._locked():
            cur = self._execute(
                "UPDATE reviews SET undone = 1 WHERE review_id = ? AND reviewer = ? AND "
                "undone = 0 AND review_id = (SELECT MAX(review_id) FROM reviews WHERE "
                "reviewer = ? AND undone = 0) RETURNING run_id, request_id",
                (int(review_id), reviewer, reviewer))
            rows = cur.fetchall()
            if not rows:
                self._not_undoable(int(review_id), reviewer)
            run_id, request_id = rows[0]
            self._execute("DELETE FROM preferences WHERE review_id = ?", (int(review_id),))
            touched = self._execute("SELECT DISTINCT judge, label FROM competence_history "
                                    "WHERE review_id = ?", (int(review_id),)).fetchall()
            self._execute("DELETE FROM competence_history WHERE review_id = ?",
                          (int(review_id),))
            for judge, label in touched:
                last = self._execute(
                    "SELECT alpha, beta, at FROM competence_history WHERE judge = ? AND label = ? "
                    "ORDER BY seq DESC LIMIT 1", (judge, label)).fetchone()
                if last is None:
                    self._execute("DELETE FROM competence WHERE judge = ? AND label = ?",
                                  (judge, label))
                else:
                    self._execute("UPDATE competence SET alpha = ?, beta = ?, updated_at = ? "
                                  "WHERE judge = ? AND label = ?", (*last, judge, label))
            self._execute("UPDATE escalations SET status = 'claimed', claimed_by = ?, "
                          "claimed_at = ? WHERE run_id = ? AND request_id = ?",
                          (reviewer, time.time(), run_id, request_id))

    def _not_undoable(self, review_id: int, reviewer: str) -> NoReturn:
        row = self._execute("SELECT reviewer, undone FROM reviews WHERE review_id = ?",
                            (review_id,)).fetchone()
        if row is None:
            raise ReviewError(f"no review {review_id}", code="unknown")
        who, undone = row
        why = ("it is undone already" if undone else f"it is {who}'s" if who != reviewer
               else "a later review of theirs must be undone first")
        raise ReviewError(f"{reviewer} cannot undo review {review_id}: {why}", code="claimed")

    def reviews(self, run_id: str | None = None,
                include_undone: bool = False) -> list[dict[str, Any]]:
        """Reviews in the order they were made: review_id, run_id, request_id, reviewer,
        verdict, chosen, revision, note, created_at, undone."""
        where, params = _where(("run_id", run_id), ("undone", None if include_undone else 0))
        rows = self._execute(f"SELECT review_id, {_REVIEW_COLUMNS}, undone FROM reviews{where} "
                             "ORDER BY review_id", params).fetchall()
        keys = ["review_id", *(k.strip() for k in _REVIEW_COLUMNS.split(",")), "undone"]
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for r in out:
            r["review_id"], r["undone"] = int(r["review_id"]), bool(r["undone"])
        return out

    # ------------------------------------------------------------------ preferences
    def add_preferences(self, rows: Iterable[dict[str, Any]]) -> int:
        """Write preference pairs in one transaction: each a dict with prompt, chosen,
        rejected, source (revision, pairwise or review) and optionally run_id, request_id, meta
        (a dict), created_at, review_id. Returns how many were written.

        Raises:
            ValueError: a row without text, with chosen equal to rejected, or an unknown source
                (nothing is written).
        """
        now = time.time()
        values = []
        for i, r in enumerate(rows):
            prompt, good, bad, source = (r.get(k) for k in ("prompt", "chosen", "rejected",
                                                           "source"))
            if source not in SOURCES:
                raise ValueError(f"preference {i}: source is one of {SOURCES}, got {source!r}")
            if not isinstance(good, str) or not isinstance(bad, str) or not good or not bad:
                raise ValueError(f"preference {i}: chosen and rejected are non-empty texts")
            if good == bad:
                raise ValueError(f"preference {i}: chosen equals rejected (no preference)")
            values.append((r.get("run_id"), r.get("request_id"), prompt or "", good, bad, source,
                           json.dumps(r.get("meta") or {}, default=str),
                           float(r.get("created_at") or now), r.get("review_id")))
        with self._transaction():
            self._insert_preferences(values)
        return len(values)

    def _insert_preferences(self, values: list[tuple[Any, ...]]) -> None:
        if values:
            self._executemany(_insert("preferences", _PREFERENCE_COLUMNS), values)

    def preferences(self, *, run_id: str | None = None,
                    since: float | str | datetime | None = None,
                    until: float | str | datetime | None = None,
                    source: str | None = None) -> list[dict[str, Any]]:
        """Preference pairs in the order written: pref_id, run_id, request_id, prompt, chosen,
        rejected, source, meta (a dict), created_at, review_id. ``since`` (inclusive) and
        ``until`` (exclusive) are epoch seconds, datetimes or ISO texts."""
        lo, hi = _timestamp(since, "since"), _timestamp(until, "until")
        where, params = _where(("run_id", run_id), ("source", source))
        for cond, value in (("created_at >= ?", lo), ("created_at < ?", hi)):
            if value is not None:
                where += (" AND " if where else " WHERE ") + cond
                params = (*params, value)
        rows = self._execute(f"SELECT pref_id, {_PREFERENCE_COLUMNS} FROM preferences{where} "
                             "ORDER BY pref_id", params).fetchall()
        keys = ["pref_id", *(k.strip() for k in _PREFERENCE_COLUMNS.split(","))]
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for r in out:
            r["meta"] = json.loads(r["meta"])
        return out

    # ------------------------------------------------------------------ competences
    def competences(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Judge -> label -> (alpha, beta): the judges' Beta counts per class."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for judge, label, a, b in self._execute(
                "SELECT judge, label, alpha, beta FROM competence ORDER BY judge, label"
        ).fetchall():
            out.setdefault(judge, {})[label] = (float(a), float(b))
        return out

    def set_competence(self, judge: str, label: str, alpha: float, beta: float,
                       review_id: int | None = None) -> None:
        """Set one judge's Beta counts for ``label`` and append the change to its history
        (with the review that caused it), in one transaction.

        Raises:
            ValueError: a count that is negative, NaN or infinite.
        """
        a, b = _positive_count(alpha, "alpha"), _positive_count(beta, "beta")
        now = time.time()
        with self._transaction():
            self._execute(
                "INSERT INTO competence(judge, label, alpha, beta, updated_at) VALUES "
                "(?, ?, ?, ?, ?) ON CONFLICT (judge, label) DO UPDATE SET alpha = excluded.alpha, "
                "beta = excluded.beta, updated_at = excluded.updated_at", (judge, label, a, b, now))
            self._execute("INSERT INTO competence_history(judge, label, alpha, beta, review_id, "
                          "at) VALUES (?, ?, ?, ?, ?, ?)", (judge, label, a, b, review_id, now))

    def competence_history(self, judge: str | None = None) -> list[dict[str, Any]]:
        """The history of competence changes, oldest first: seq, judge, label, alpha, beta,
        review_id, at."""
        where, params = _where(("judge", judge))
        rows = self._execute("SELECT seq, judge, label, alpha, beta, review_id, at FROM "
                             f"competence_history{where} ORDER BY seq", params).fetchall()
        return [{"seq": int(s), "judge": j, "label": lab, "alpha": float(a), "beta": float(b),
                 "review_id": None if r is None else int(r), "at": t}
                for s, j, lab, a, b, r, t in rows]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _where(*conditions: tuple[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """`` WHERE a = ? AND b = ?`` for the conditions whose value is not None."""
    used = [(column, value) for column, value in conditions if value is not None]
    if not used:
        return "", ()
    return (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in used),
            tuple(v for _, v in used))


def _queue_item(row: Sequence[Any]) -> dict[str, Any]:
    run_id, request_id, priority, reason, principles, status, claimed_by, claimed_at = row
    return {"run_id": run_id, "request_id": request_id, "priority": int(priority),
            "reason": reason, "principles": json.loads(principles), "status": status,
            "claimed_by": claimed_by, "claimed_at": claimed_at}


def _request_meta(request: Request) -> dict[str, Any]:
    return {"task": request.task, "category": request.category,
            "prompt_safe": request.prompt_safe, "gold": request.gold,
            "metadata": request.metadata}


def panel_verdicts(outcome: dict[str, Any], candidate_ids: Sequence[str]) -> dict[str, str]:
    """Candidate id -> ``accept`` / ``reject`` as the panel decided (an outcome's JSON): per
    ballot for a verdict task; for a pairwise ballot (subject ``*``) the winner accept and the
    others reject. Undecided candidates are left out.

    Example:
        >>> panel_verdicts({"decisions": [{"subject": "*", "label": "b"}]}, ["a", "b"])
        {'a': 'reject', 'b': 'accept'}
    """
    out: dict[str, str] = {}
    for d in outcome.get("decisions", ()):
        label = d.get("label")
        if label is None:
            continue
        if d.get("subject") == "*":
            out.update({c: "accept" if c == label else "reject" for c in candidate_ids})
        elif label in ("accept", "reject"):
            out[d["subject"]] = label
    return out


def review_pairs(item: dict[str, Any], verdict: str, *, chosen: str | None = None,
                 revision: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """The (chosen text, rejected text, meta) pairs a review implies; a pair only where the
    chosen side was really preferred:

    * prefer: the chosen candidate over each other candidate (the reviewer's pick);
    * revise: the revision over the text it revises;
    * accept X: X over each other text (candidate or draft) the panel rejected; reject X: each
      other text the panel accepted over X (one side is the reviewer's verdict, the other the
      panel's; a lone candidate with no draft gives no pair);
    * never a pair of equal texts, and none when the store lacks the texts (a decision
      recorded without its request).

    ``item`` has prompt, accepted_candidate, delivered_draft, candidates and drafts (each with
    id, text, panel).

    Example:
        >>> item = {"prompt": "p", "accepted_candidate": None, "delivered_draft": None,
        ...         "candidates": [{"id": "a", "text": "A", "panel": "reject"},
        ...                        {"id": "b", "text": "B", "panel": "reject"}], "drafts": []}
        >>> [(g, b) for g, b, _ in review_pairs(item, "prefer", chosen="b")]
        [('B', 'A')]
    """
    texts = [*item["candidates"], *item["drafts"]]
    by_id = {t["id"]: t for t in texts}
    target = chosen or item.get("accepted_candidate") or (
        item.get("delivered_draft") if verdict == "revise" else None)
    if target is None and len(item["candidates"]) == 1:
        target = item["candidates"][0]["id"]
    own = by_id.get(target) if target else None
    if own is None:
        return []
    pairs: list[tuple[str, str, dict[str, Any]]] = []
    if verdict == "prefer":
        pairs = [(own["text"], c["text"], {"candidate": own["id"], "other": c["id"],
                                           "other_side": "reviewer"})
                 for c in item["candidates"] if c["id"] != own["id"]]
    elif verdict == "revise" and revision:
        pairs = [(revision, own["text"], {"candidate": own["id"], "other": own["id"],
                                          "other_side": "reviewer"})]
    elif verdict in ("accept", "reject"):
        want = "reject" if verdict == "accept" else "accept"
        for other in texts:
            if other["id"] == own["id"] or other.get("panel") != want:
                continue
            good, bad = (own, other) if verdict == "accept" else (other, own)
            pairs.append((good["text"], bad["text"], {"candidate": own["id"],
                                                      "other": other["id"],
                                                      "other_side": "panel"}))
    return [(g, b, m) for g, b, m in pairs if g and b and g != b]


def _outcome(blob: str, votes: list[str]) -> Outcome:
    data = json.loads(blob)
    data["votes"] = [json.loads(v) for v in votes]
    return Outcome.model_validate(data)
