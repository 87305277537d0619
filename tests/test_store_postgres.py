"""The store behaves the same on SQLite and on a real PostgreSQL server, which this module starts.

The ``postgres`` fixture runs ``initdb`` and ``pg_ctl`` (from PATH, else /usr/lib/postgresql/*/bin)
in a temporary folder: its own data folder, a free port on 127.0.0.1, a unix socket folder of its
own, trust authentication (as the ``postgres`` system user when the tests run as root, since
PostgreSQL refuses root). Without server binaries the PostgreSQL cases are skipped, unless
``CONSENSUS_REQUIRE_POSTGRES=1`` (CI), then they fail. Every case gets a fresh database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from consensus.errors import ConfigError
from consensus.store import SCHEMA_VERSION, DuplicateDecision, Store, open_store
from consensus.store_pg import dsn_passwords, safe_dsn
from consensus.types import Decision, Escalation, Outcome, Vote
from tests.pg_support import Server, free_port, server_bin

REQUIRE = os.environ.get("CONSENSUS_REQUIRE_POSTGRES") == "1"
T = TypeVar("T")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    """A running PostgreSQL server for the module, stopped and removed after it."""
    bindir = server_bin()
    if bindir is None:
        message = "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or /usr/lib/postgresql"
        if REQUIRE:
            pytest.fail(f"{message}, and CONSENSUS_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="consensus-pg-"))  # short: the socket path has a limit
    server = Server(bindir, root)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired, LookupError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL from {bindir}: {exc}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path) -> str:
    """A fresh store on each backend: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "c.sqlite")
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def opened(target) -> Iterator[Callable[[], Store]]:
    """Opens the store ``target`` names (as often as a test likes); closes them all after."""
    stores: list[Store] = []

    def open_() -> Store:
        stores.append(open_store(target))
        return stores[-1]

    yield open_
    for s in stores:
        s.close()


# ------------------------------------------------------------------ outcomes
def outcome(i: int | str, *, n_votes: int = 2, escalate: bool = False,
            reason: str = "rejected") -> Outcome:
    rid = i if isinstance(i, str) else f"r{i}"
    votes = [Vote(judge="j0", request_id=rid, candidate_id="a", label="reject", confidence=0.9,
                  critique="nope", latency_s=0.25, cost_usd=0.001, tokens=42)]
    votes += [Vote.abstain(judge=f"j{k}", request_id=rid, candidate_id="a", kind="timeout",
                           reason="no reply within 5s") for k in range(1, n_votes)]
    d = Decision(request_id=rid, subject="a", label="reject", probability=0.9,
                 strategy="majority")
    esc = Escalation(priority=3, reason="split panel", principles=("harm",)) if escalate else None
    return Outcome(request_id=rid, action="escalate" if escalate else "block", output="no",
                   reason=reason, decisions=(d,), votes=tuple(votes[:n_votes]), latency_s=0.01,
                   cost_usd=0.001, escalation=esc)


def started(s: Store, run_id: str = "run") -> Store:
    s.ensure_run(run_id, scenario="t", strategy="majority", config={"a": 1})
    return s


# ------------------------------------------------------------------ both backends
def test_round_trip_with_votes_and_an_escalation(opened):
    s = started(opened())
    o = outcome(1, n_votes=3, escalate=True)
    s.record("run", o)
    assert s.outcomes("run") == [o]  # votes (with their abstentions), decisions, escalation
    assert s.outcome("run", "r1") == o
    assert s.outcome("run", "nope") is None and s.outcome("other", "r1") is None
    assert (s.count_decisions("run"), s.count_votes("run")) == (1, 3)
    (pending,) = s.pending_escalations("run")
    assert pending == {"run_id": "run", "request_id": "r1", "priority": 3,
                       "reason": "split panel", "principles": ["harm"]}


def test_outcomes_come_back_in_recording_order(opened):
    s = started(opened())
    ids = ["r9", "r1", "r10", "b", "a", "r0"]
    for rid in ids:
        s.record("run", outcome(rid))
    assert [o.request_id for o in s.outcomes("run")] == ids
    assert [v.judge for v in s.outcomes("run")[0].votes] == ["j0", "j1"]


def test_a_duplicate_raises_and_writes_nothing(opened):
    s = started(opened())
    first = outcome(0)
    s.record("run", first)
    with pytest.raises(DuplicateDecision) as err:
        s.record("run", outcome(0, n_votes=3, escalate=True, reason="other"))
    assert (err.value.run_id, err.value.request_id) == ("run", "r0")
    assert not isinstance(err.value, ConfigError)
    assert (s.count_decisions("run"), s.count_votes("run")) == (1, 2)
    assert s.outcome("run", "r0") == first and s.pending_escalations() == []
    s.record("run", outcome(1))  # the store goes on after a duplicate
    assert s.count_decisions("run") == 2


def together(n: int, work: Callable[[int, threading.Barrier], T]) -> list[T]:
    """``work(i, barrier)`` in ``n`` threads at once: their results, or the first error (a
    failing thread breaks the barrier, so the others never wait for it)."""
    barrier = threading.Barrier(n, timeout=60)

    def run(i: int) -> T:
        try:
            return work(i, barrier)
        except BaseException:
            barrier.abort()
            raise

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_writers_keep_one_row_per_request(target, opened):
    n_threads, per_thread, stride = 4, 50, 25  # thread t records r(25t) .. r(25t + 49)

    def write(t: int, barrier: threading.Barrier) -> int:
        duplicates = 0
        store = started(open_store(target))  # its own connection, in its own thread
        try:
            barrier.wait()
            for i in range(t * stride, t * stride + per_thread):
                try:
                    store.record("run", outcome(i))
                except DuplicateDecision:
                    duplicates += 1
        finally:
            store.close()
        return duplicates

    duplicates = together(n_threads, write)
    distinct = (n_threads - 1) * stride + per_thread
    s = opened()
    assert s.count_decisions("run") == distinct and s.count_votes("run") == 2 * distinct
    assert sum(duplicates) == n_threads * per_thread - distinct
    assert sorted(o.request_id for o in s.outcomes("run")) == sorted(
        f"r{i}" for i in range(distinct))


def test_racing_duplicates_record_once(target, opened):
    """Two connections record the same request at the same moment, 20 times over: each time
    one of them raises DuplicateDecision and one row stays."""
    rounds = 20

    def write(_: int, barrier: threading.Barrier) -> list[int]:
        raised = []
        store = started(open_store(target))
        try:
            for i in range(rounds):
                barrier.wait()
                try:
                    store.record("run", outcome(i))
                except DuplicateDecision:
                    raised.append(i)
        finally:
            store.close()
        return raised

    first, second = together(2, write)
    assert sorted(first + second) == list(range(rounds))  # once per round, either side
    s = opened()
    assert s.count_decisions("run") == rounds and s.count_votes("run") == 2 * rounds


def test_ensure_run_is_idempotent_and_keeps_the_first(opened):
    s = opened()
    s.ensure_run("run", scenario="t", strategy="majority", config={"replica": 1})
    s.ensure_run("run", scenario="t", strategy="majority", config={"replica": 1})
    opened().ensure_run("run", scenario="t", strategy="majority", config={"replica": 2})
    assert s.conn.execute("SELECT config FROM runs").fetchall() == [('{"replica": 1}',)]
    s.record("run", outcome(0))
    assert s.count_decisions("run") == 1


def test_a_committed_decision_is_visible_to_another_connection_at_once(opened):
    writer, reader = started(opened()), opened()
    assert reader.outcome("run", "r0") is None
    for i in range(3):
        writer.record("run", outcome(i, escalate=i == 1))
        assert reader.outcome("run", f"r{i}") == outcome(i, escalate=i == 1)
        assert reader.count_decisions("run") == i + 1
    assert [e["request_id"] for e in reader.pending_escalations("run")] == ["r1"]


def test_a_newer_schema_is_refused_with_a_clear_message(target):
    s = open_store(target)
    if isinstance(s.conn, __import__("sqlite3").Connection):
        s.conn.execute("PRAGMA user_version=99")
        s.conn.commit()
    else:
        s.conn.execute("UPDATE schema_version SET version = 99")
    name = s.name
    s.close()
    with pytest.raises(ConfigError, match="schema version 99, newer than this release") as err:
        open_store(target)
    assert err.value.field == "--store" and err.value.source == name
    assert err.value.__cause__ is None


def test_a_reopened_store_keeps_its_schema_and_rows(target):
    s = started(open_store(target))
    s.record("run", outcome(0))
    s.close()
    again = open_store(target)
    assert again.outcome("run", "r0") == outcome(0)
    again.close()


# ------------------------------------------------------------------ SQLite only
def test_concurrent_openers_of_a_fresh_sqlite_file_all_open_it(tmp_path):
    """Four connections open (and so create and migrate) a new SQLite store at the same moment,
    25 times over: none fails. SQLite skips its busy handler for a change of journal mode;
    before the store retried it, a third of such pairs raised "database is locked"."""
    def open_(path: Path, barrier: threading.Barrier) -> tuple[str, int, int]:
        barrier.wait()
        s = started(open_store(path))
        try:
            mode = s.conn.execute("PRAGMA journal_mode").fetchone()[0]
            return mode, s._user_version(), s.count_decisions("run")
        finally:
            s.close()

    for r in range(25):
        path = tmp_path / f"c{r}.sqlite"
        assert together(4, lambda _, b, p=path: open_(p, b)) == [("wal", SCHEMA_VERSION, 0)] * 4


# ------------------------------------------------------------------ PostgreSQL only
def test_concurrent_openers_of_a_fresh_database_create_the_schema_once(postgres):
    dsn = postgres.new_database()

    def open_(_: int, barrier: threading.Barrier) -> list[tuple[int, int]]:
        barrier.wait()
        s = open_store(dsn)  # without the advisory lock, most of these fail (pg_type race)
        try:
            return s.conn.execute("SELECT id, version FROM schema_version").fetchall()
        finally:
            s.close()

    assert together(6, open_) == [[(1, SCHEMA_VERSION)]] * 6


def test_postgres_scheme_and_psycopg_types(postgres):
    s = open_store(postgres.dsn(postgres.new_database().rsplit("/", 1)[1], scheme="postgres"))
    assert type(s).__name__ == "PgStore" and s.name.startswith("postgres://postgres@")
    assert "Store" in repr(s)
    s.close()


def test_a_dsn_to_a_closed_port_is_a_config_error_without_the_password():
    secret = "s3cr3t-Pa55word"
    dsn = f"postgresql://alice:{secret}@127.0.0.1:{free_port()}/db"
    with pytest.raises(ConfigError) as err:
        open_store(dsn)
    text = f"{err.value} {err.value!r} {err.value.message}"
    assert secret not in text and "s3cr3t" not in text
    assert str(err.value).startswith(
        "--store: cannot open the store postgresql://alice@127.0.0.1:")
    assert err.value.field == "--store" and err.value.__cause__ is None
    assert err.value.__suppress_context__


def test_a_password_in_the_query_is_kept_out_of_the_message_too():
    dsn = f"postgresql://bob@127.0.0.1:{free_port()}/db?password=hunter22&connect_timeout=5"
    with pytest.raises(ConfigError) as err:
        open_store(dsn)
    assert "hunter22" not in str(err.value) and "connect_timeout=5" in str(err.value)


def test_without_psycopg_the_message_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'consensus-panel\[postgres\]'") as err:
        open_store("postgresql://u:topsecret@db/consensus")
    assert "topsecret" not in str(err.value) and "postgresql://u@db/consensus" in str(err.value)


@pytest.mark.parametrize(("dsn", "safe", "passwords"), [
    ("postgresql://u:pw@h:5432/db", "postgresql://u@h:5432/db", ["pw"]),
    ("postgresql://u@h/db", "postgresql://u@h/db", []),
    ("postgresql://h/db", "postgresql://h/db", []),
    ("postgres://u:p%40ss@h/db", "postgres://u@h/db", ["p%40ss", "p@ss"]),
    ("postgresql://u:a/b@c@h1,h2:5433/db", "postgresql://u@h1,h2:5433/db", ["a/b@c"]),
    ("postgresql://u@h/db?sslmode=require&password=x1", "postgresql://u@h/db?sslmode=require",
     ["x1"]),
    ("postgresql://:pw@h/db", "postgresql://h/db", ["pw"]),
])
def test_safe_dsn_drops_every_password(dsn, safe, passwords):
    assert safe_dsn(dsn) == safe
    assert dsn_passwords(dsn) == passwords


def test_open_store_takes_a_path_or_a_string_for_sqlite(tmp_path):
    for target in (tmp_path / "a.sqlite", str(tmp_path / "b.sqlite")):
        s = open_store(target)
        assert type(s) is Store and s.path == Path(target)
        s.close()
