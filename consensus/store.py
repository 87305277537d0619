"""SQLite store of runs, decisions and votes: WAL, one transaction per decision.

A decision and all its votes are written in one transaction as soon as the decision is made, so
a crash loses at most the decision in flight, never a recorded one. The schema version lives in
``PRAGMA user_version``; later versions migrate forward in :meth:`Store._migrate`. Version 2
adds ``escalations``: the decisions handed to a human, pending review (written in the same
transaction as their decision; the review queue reads them). A revision's or regeneration's
drafts and their votes are part of the decision's ``outcome`` JSON.

Example:
    >>> import tempfile, pathlib
    >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite")
    >>> s.start_run("r1", scenario="demo", strategy="majority", config={})
    >>> s.count_decisions("r1")
    0
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from consensus.errors import ConfigError
from consensus.redact import redact
from consensus.types import Outcome, RunSummary

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    scenario    TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    config      TEXT NOT NULL,
    summary     TEXT
);
CREATE TABLE IF NOT EXISTS decisions (
    run_id             TEXT NOT NULL REFERENCES runs(run_id),
    request_id         TEXT NOT NULL,
    action             TEXT NOT NULL,
    accepted_candidate TEXT,
    reason             TEXT NOT NULL,
    latency_s          REAL NOT NULL,
    cost_usd           REAL NOT NULL,
    outcome            TEXT NOT NULL,
    created_at         REAL NOT NULL,
    PRIMARY KEY (run_id, request_id)
);
CREATE TABLE IF NOT EXISTS votes (
    run_id         TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    candidate_id   TEXT NOT NULL,
    judge          TEXT NOT NULL,
    judge_version  TEXT NOT NULL,
    label          TEXT,
    confidence     REAL,
    abstain_kind   TEXT,
    abstain_reason TEXT,
    latency_s      REAL NOT NULL,
    cost_usd       REAL,
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
    created_at  REAL NOT NULL,
    PRIMARY KEY (run_id, request_id),
    FOREIGN KEY (run_id, request_id) REFERENCES decisions(run_id, request_id)
);
CREATE INDEX IF NOT EXISTS escalations_pending ON escalations(status, priority);
"""


class Store:
    """The project's database (one file; safe to open from several processes).

    Args:
        path: SQLite file; created with its folder if absent.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        src = str(self.path)
        if self.path.is_dir():
            raise ConfigError("the store is a directory; name a file (e.g. consensus.sqlite)",
                              source=src, field="--store")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            detail = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"cannot open the store: {detail} (is it an SQLite file, and "
                              "writable?)", source=src, field="--store") from None

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"the store has schema version {version}, newer than this release's "
                f"{SCHEMA_VERSION}; upgrade consensus to open it")
        steps = [(1, _SCHEMA), (2, _SCHEMA_2)]
        for target, script in steps:
            if version < target:
                with self.conn:
                    self.conn.executescript(script)
                    self.conn.execute(f"PRAGMA user_version={target}")
                version = target

    def start_run(self, run_id: str, *, scenario: str, strategy: str, config: dict[str, Any]) -> None:
        """Record the start of a run."""
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs(run_id, scenario, strategy, started_at, config) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, scenario, strategy, time.time(),
                 redact(json.dumps(config, default=str))),
            )

    def record(self, run_id: str, outcome: Outcome) -> None:
        """Write one decision and its votes in one transaction."""
        with self.conn:
            self.conn.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, outcome.request_id, outcome.action, outcome.accepted_candidate,
                 outcome.reason, outcome.latency_s, outcome.cost_usd,
                 outcome.model_dump_json(exclude={"votes"}), time.time()),
            )
            self.conn.executemany(
                "INSERT INTO votes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, v.request_id, v.candidate_id, v.judge, v.judge_version, v.label,
                  v.confidence, v.abstain_kind, v.abstain_reason, v.latency_s, v.cost_usd,
                  v.tokens, v.model_dump_json()) for v in outcome.votes],
            )
            esc = outcome.escalation
            if esc is not None:
                self.conn.execute(
                    "INSERT INTO escalations VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, outcome.request_id, esc.priority, esc.reason,
                     json.dumps(list(esc.principles)), esc.status, time.time()))

    def pending_escalations(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Escalated decisions awaiting review, most urgent first."""
        sql = ("SELECT run_id, request_id, priority, reason, principles FROM escalations "
               "WHERE status = 'pending'" + (" AND run_id = ?" if run_id else "")
               + " ORDER BY priority DESC, created_at")
        rows = self.conn.execute(sql, (run_id,) if run_id else ()).fetchall()
        return [{"run_id": r, "request_id": q, "priority": p, "reason": why,
                 "principles": json.loads(pr)} for r, q, p, why, pr in rows]

    def finish_run(self, run_id: str, summary: RunSummary) -> None:
        """Record the end of a run and its summary."""
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, summary = ? WHERE run_id = ?",
                (time.time(), summary.model_dump_json(), run_id),
            )

    def count_decisions(self, run_id: str) -> int:
        """Decisions recorded for a run."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM decisions WHERE run_id = ?", (run_id,)).fetchone()[0]

    def outcomes(self, run_id: str) -> list[Outcome]:
        """Recorded outcomes of a run (votes included), in recording order."""
        rows = self.conn.execute(
            "SELECT request_id, outcome FROM decisions WHERE run_id = ? ORDER BY rowid",
            (run_id,)).fetchall()
        out = []
        for request_id, blob in rows:
            votes = self.conn.execute(
                "SELECT vote FROM votes WHERE run_id = ? AND request_id = ? ORDER BY rowid",
                (run_id, request_id),
            ).fetchall()
            data = json.loads(blob)
            data["votes"] = [json.loads(v) for (v,) in votes]
            out.append(Outcome.model_validate(data))
        return out

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
