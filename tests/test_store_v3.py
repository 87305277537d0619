"""Schema version 3 of the store: migrations from the stores earlier releases created, the
request and draft rows recorded with each decision, the review queue (claims, reviews, undo),
preference pairs and judges' competences. SQLite files throughout; the queue's concurrency case
also runs on a real PostgreSQL server (the ``postgres`` fixture of tests/test_store_postgres.py).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest

from consensus.errors import ConfigError
from consensus.store import (
    SCHEMA_VERSION,
    DuplicateDecision,
    ReviewError,
    Store,
    open_store,
    review_pairs,
)
from consensus.types import (
    Candidate,
    Decision,
    DraftRecord,
    Escalation,
    Outcome,
    Request,
    Vote,
)
from tests.conftest import ROOT
from tests.test_store_postgres import postgres, together  # noqa: F401  (a fixture, a helper)

# ------------------------------------------------------------------ old schemas, as data
# The DDL releases before version 3 ran (consensus/store.py at schema versions 1 and 2, as
# SQLite wrote it), copied here so the migration is tested against what users' files hold.
V1_DDL = """
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
PRAGMA user_version=1;
"""
V2_DDL = V1_DDL.replace("PRAGMA user_version=1;", "") + """
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
PRAGMA user_version=2;
"""
V3_TABLES = {"requests", "candidates", "interventions", "reviews", "preferences", "competence",
             "competence_history"}


def old_store(path, ddl: str, *, escalated: bool) -> None:
    """A store as an earlier release left it: one run, one decision with two votes (and a
    pending escalation at version 2)."""
    o = outcome("q1", escalate=escalated)
    conn = sqlite3.connect(path)
    conn.executescript(ddl)
    conn.execute("INSERT INTO runs VALUES ('old', 't', 'majority', 1.0, NULL, '{}', NULL)")
    conn.execute("INSERT INTO decisions VALUES ('old', 'q1', ?, NULL, 'r', 0.1, 0.0, ?, 2.0)",
                 (o.action, o.model_dump_json(exclude={"votes"})))
    for v in o.votes:
        conn.execute("INSERT INTO votes VALUES ('old', 'q1', ?, ?, '', ?, ?, NULL, NULL, 0.1, "
                     "NULL, NULL, ?)", (v.candidate_id, v.judge, v.label, v.confidence,
                                        v.model_dump_json()))
    if escalated:
        conn.execute("INSERT INTO escalations VALUES ('old', 'q1', 2, 'split panel', '[]', "
                     "'pending', 2.0)")
    conn.commit()
    conn.close()


# ------------------------------------------------------------------ helpers
def request(rid: str, *texts: str, task: str = "verdict") -> Request:
    texts = texts or ("Hello there.", "You idiot.")
    return Request(id=rid, prompt=f"prompt of {rid}", task=task, category="greeting",
                   candidates=tuple(Candidate(id=f"c{i + 1}", text=t, generator=f"gen{i}")
                                    for i, t in enumerate(texts)))


def outcome(rid: str, *, labels: tuple[str, ...] = ("accept", "reject"), escalate: bool = False,
            priority: int = 2, drafts: tuple[DraftRecord, ...] = (),
            accepted: str | None = None) -> Outcome:
    """An outcome with one ballot per candidate c1.. (its label from ``labels``) and two votes
    on each."""
    decisions, votes = [], []
    for i, label in enumerate(labels):
        cid = f"c{i + 1}"
        decisions.append(Decision(request_id=rid, subject=cid, label=label, probability=0.6,
                                  strategy="majority"))
        votes += [Vote(judge="j1", request_id=rid, candidate_id=cid, label=label,
                       confidence=0.8, critique=f"j1 on {cid}"),
                  Vote.abstain(judge="j2", request_id=rid, candidate_id=cid, kind="timeout",
                               reason="slow")]
    esc = Escalation(priority=priority, reason="split panel", principles=("harm",)) \
        if escalate else None
    return Outcome(request_id=rid, action="escalate" if escalate else "block",
                   accepted_candidate=accepted, decisions=tuple(decisions), votes=tuple(votes),
                   escalation=esc, drafts=drafts)


def started(s: Store, run_id: str = "run") -> Store:
    s.ensure_run(run_id, scenario="t", strategy="majority", config={})
    return s


def tables(s: Store) -> set[str]:
    return {n for (n,) in s.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.fixture
def store(tmp_path):
    s = started(Store(tmp_path / "c.sqlite"))
    yield s
    s.close()


def escalated(s: Store, n: int, *, run_id: str = "run", texts=("Hello there.", "You idiot.")):
    """``n`` escalated decisions q0..q(n-1) with their requests; priority cycles 0..3."""
    for i in range(n):
        s.record(run_id, outcome(f"q{i}", escalate=True, priority=i % 4),
                 request=request(f"q{i}", *texts))


# ------------------------------------------------------------------ migrations
@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_is_migrated_and_keeps_its_rows(tmp_path, version):
    path = tmp_path / "old.sqlite"
    old_store(path, V1_DDL if version == 1 else V2_DDL, escalated=version == 2)
    s = Store(path)
    assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert V3_TABLES | {"runs", "decisions", "votes", "escalations"} <= tables(s)
    assert s.outcome("old", "q1") == outcome("q1", escalate=version == 2)
    assert s.decided_ids("old") == {"q1"} and s.request_row("old", "q1") is None
    run = s.run("old")
    assert run is not None and run["status"] == "running" and run["fingerprint"] is None
    if version == 2:  # the pending escalation is in the queue, with the new columns empty
        assert s.queue() == [{"run_id": "old", "request_id": "q1", "priority": 2,
                              "reason": "split panel", "principles": [], "status": "pending",
                              "claimed_by": None, "claimed_at": None}]
        assert s.claim("ann")["request_id"] == "q1"
        # no request row in an old store: the review is kept, with no pair (no texts)
        rid = s.submit_review("old", "q1", "ann", "prefer", chosen="c1")
        assert s.reviews()[0]["review_id"] == rid and s.preferences() == []
    s.record("old", outcome("q2", escalate=True), request=request("q2"))  # new rows go on
    assert s.request_row("old", "q2")["prompt"] == "prompt of q2"
    s.close()
    again = Store(path)  # an up-to-date store opens without migrating again
    assert again.count_decisions("old") == 2
    again.close()


def test_migrating_twice_from_two_openers_is_harmless(tmp_path):
    path = tmp_path / "old.sqlite"
    old_store(path, V2_DDL, escalated=True)

    def open_(_: int, barrier: threading.Barrier) -> int:
        barrier.wait()
        s = Store(path)
        try:
            return int(s.conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            s.close()

    assert together(4, open_) == [SCHEMA_VERSION] * 4


def test_a_newer_store_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "future.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=7")
    conn.close()
    with pytest.raises(ConfigError, match="schema version 7, newer than this release's 3") as e:
        Store(path)
    assert e.value.source == str(path) and str(path) in str(e.value)


def test_consensus_run_refuses_a_newer_store_with_exit_2_and_no_traceback(tmp_path):
    path = tmp_path / "future.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=9")
    conn.close()
    proc = subprocess.run(
        [sys.executable, "-m", "consensus.cli.app", "run", "scenarios/safety_smoke.yaml",
         "--out", str(tmp_path / "out"), "--store", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and "schema version 9" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ------------------------------------------------------------------ record
def test_record_writes_the_request_candidates_and_drafts_with_the_decision(store):
    draft = DraftRecord(id="d1", kind="revision", round=1, parent="c2", source="redaction",
                        text="You [insult redacted].", accepted=True,
                        votes=(Vote(judge="j1", request_id="q/d1", candidate_id="d1",
                                    label="accept"),))
    o = outcome("q", drafts=(draft,))
    store.record("run", o, request=request("q"))
    assert store.outcome("run", "q") == o
    row = store.request_row("run", "q")
    assert row == {"prompt": "prompt of q",
                   "meta": {"task": "verdict", "category": "greeting", "prompt_safe": None,
                            "gold": None, "metadata": {}},
                   "candidates": [{"id": "c1", "text": "Hello there.", "generator": "gen0"},
                                  {"id": "c2", "text": "You idiot.", "generator": "gen1"}]}
    (iv,) = store.interventions("run")
    assert (iv["step"], iv["draft_id"], iv["kind"], iv["parent"], iv["accepted"]) == \
        (1, "d1", "revision", "c2", True)
    assert iv["text"] == "You [insult redacted]." and iv["votes"][0]["label"] == "accept"
    assert store.decided_ids("run") == {"q"}


def test_a_duplicate_writes_no_request_candidate_or_draft_row(store):
    store.record("run", outcome("q"), request=request("q"))
    with pytest.raises(DuplicateDecision):
        store.record("run", outcome("q", escalate=True), request=request("q", "other", "x"))
    counts = {t: store.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("decisions", "requests", "candidates", "escalations", "interventions")}
    assert counts == {"decisions": 1, "requests": 1, "candidates": 2, "escalations": 0,
                      "interventions": 0}
    assert store.request_row("run", "q")["candidates"][0]["text"] == "Hello there."


def test_a_request_of_another_id_is_refused_and_nothing_written(store):
    with pytest.raises(ValueError, match="'q2'"):
        store.record("run", outcome("q1"), request=request("q2"))
    assert store.decided_ids("run") == set()


def test_runs_report_status_and_fingerprint(store):
    from consensus.types import RunSummary

    store.start_run("r2", scenario="t", strategy="majority", config={}, fingerprint="abc")
    assert store.run("r2")["status"] == "running" and store.run("r2")["fingerprint"] == "abc"
    store.finish_run("r2", RunSummary(scenario="t", strategy="majority", run_id="r2",
                                      n_requests=0, status="interrupted"))
    assert store.run("r2")["status"] == "interrupted"
    store.reopen_run("r2")
    assert store.run("r2")["status"] == "running" and store.run("r2")["finished_at"] is None
    assert next(r["run_id"] for r in store.runs(scenario="t")) == "r2"  # latest first
    assert store.run("nope") is None


# ------------------------------------------------------------------ the queue
def test_queue_is_most_urgent_first_and_claims_follow_it(store):
    escalated(store, 8)
    queue = store.queue()
    assert [q["priority"] for q in queue] == [3, 3, 2, 2, 1, 1, 0, 0]
    assert [q["request_id"] for q in queue[:2]] == ["q3", "q7"]  # ties: the older first
    first = store.claim("ann")
    assert (first["request_id"], first["status"], first["claimed_by"]) == ("q3", "claimed", "ann")
    assert [q["request_id"] for q in store.queue(status="claimed")] == ["q3"]
    assert len(store.queue()) == 7 and store.queue(limit=2)[0]["request_id"] == "q7"
    assert store.claim("bob", "run", "q3") is None  # held by ann
    assert store.escalation("run", "q3")["claimed_by"] == "ann"
    assert store.claim("ann", "run", "q3")["request_id"] == "q3"  # her own claim, again
    assert store.release("run", "q3", "bob") is False
    assert store.release("run", "q3", "ann") is True
    assert store.claim("bob", request_id="q3")["claimed_by"] == "bob"  # the run is inferred
    assert store.claim("bob", "other-run") is None
    with pytest.raises(ValueError, match="status"):
        store.queue(status="done")


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "c.sqlite")
    return request.getfixturevalue("postgres").new_database()


def test_concurrent_reviewers_never_claim_the_same_item(target):
    n_items, n_reviewers = 120, 4
    setup = started(open_store(target))
    escalated(setup, n_items)

    def drain(k: int, barrier: threading.Barrier) -> list[str]:
        s = open_store(target)  # a connection of its own, in its own thread
        got = []
        try:
            barrier.wait()
            while (item := s.claim(f"reviewer{k}")) is not None:
                got.append(item["request_id"])
                assert item["claimed_by"] == f"reviewer{k}"
        finally:
            s.close()
        return got

    claimed = together(n_reviewers, drain)
    every = [rid for got in claimed for rid in got]
    assert sorted(every) == sorted(f"q{i}" for i in range(n_items))  # each exactly once
    assert max(Counter(every).values()) == 1
    by = Counter(q["claimed_by"] for q in setup.queue(status="claimed", limit=1000))
    assert by == Counter({f"reviewer{k}": len(g) for k, g in enumerate(claimed) if g})
    assert setup.queue() == []
    setup.close()


def test_a_review_is_submitted_only_by_its_claimer(store):
    escalated(store, 2)
    with pytest.raises(ReviewError, match="has not claimed") as e:
        store.submit_review("run", "q1", "ann", "accept", chosen="c1")  # nobody claimed it
    assert e.value.code == "claimed"
    store.claim("ann", "run", "q1")
    with pytest.raises(ReviewError, match="claimed by ann") as e:
        store.submit_review("run", "q1", "bob", "accept", chosen="c1")
    assert e.value.code == "claimed"
    with pytest.raises(ReviewError) as e:
        store.submit_review("run", "nope", "ann", "accept")
    assert e.value.code == "unknown"
    for bad, kwargs in [("approve", {}), ("prefer", {}), ("revise", {"revision": "  "}),
                        ("accept", {"chosen": "c9"})]:
        with pytest.raises(ReviewError) as e:
            store.submit_review("run", "q1", "ann", bad, **kwargs)
        assert e.value.code == "invalid", bad
    assert store.reviews() == [] and store.escalation("run", "q1")["status"] == "claimed"
    rid = store.submit_review("run", "q1", "ann", "accept", chosen="c1", note="fine")
    (review,) = store.reviews()
    assert review["review_id"] == rid and review["reviewer"] == "ann" and review["note"] == "fine"
    assert store.escalation("run", "q1")["status"] == "reviewed"
    with pytest.raises(ReviewError):  # reviewed: not again
        store.submit_review("run", "q1", "ann", "reject", chosen="c1")
    assert store.claim("bob", "run", "q1") is None


def test_undo_restores_the_claim_and_removes_pairs_and_competences(store):
    escalated(store, 3)
    store.set_competence("j1", "accept", 2.0, 1.0)  # a value before any review
    store.claim("ann", "run", "q0")
    first = store.submit_review("run", "q0", "ann", "prefer", chosen="c1")
    store.set_competence("j1", "accept", 3.0, 1.0, review_id=first)
    store.claim("ann", "run", "q1")
    second = store.submit_review("run", "q1", "ann", "prefer", chosen="c2", note="c2 is better")
    store.set_competence("j1", "accept", 3.0, 2.0, review_id=second)
    store.set_competence("j2", "reject", 1.0, 1.0, review_id=second)
    assert len(store.preferences()) == 2
    with pytest.raises(ReviewError, match="later review") as e:
        store.undo_review(first, "ann")  # not her last
    assert e.value.code == "claimed"
    with pytest.raises(ReviewError, match="ann's"):
        store.undo_review(second, "bob")
    with pytest.raises(ReviewError) as e:
        store.undo_review(999, "ann")
    assert e.value.code == "unknown"

    store.undo_review(second, "ann")
    item = store.escalation("run", "q1")
    assert (item["status"], item["claimed_by"]) == ("claimed", "ann")
    assert [p["request_id"] for p in store.preferences()] == ["q0"]
    assert store.competences() == {"j1": {"accept": (3.0, 1.0)}}  # j2's row is gone
    assert all(h["review_id"] != second for h in store.competence_history())
    assert [r["review_id"] for r in store.reviews()] == [first]
    assert [r["undone"] for r in store.reviews(include_undone=True)] == [False, True]
    with pytest.raises(ReviewError, match="undone already"):
        store.undo_review(second, "ann")
    store.undo_review(first, "ann")  # now the first is her last
    assert store.competences() == {"j1": {"accept": (2.0, 1.0)}}
    assert store.preferences() == [] and store.escalation("run", "q0")["status"] == "claimed"
    again = store.submit_review("run", "q1", "ann", "reject", chosen="c1")  # she can go on
    assert again > second


# ------------------------------------------------------------------ preference pairs
def submit(store: Store, rid: str, verdict: str, **kwargs) -> list[tuple[str, str]]:
    store.claim("ann", "run", rid)
    review_id = store.submit_review("run", rid, "ann", verdict, **kwargs)
    return [(p["chosen"], p["rejected"]) for p in store.preferences()
            if p["review_id"] == review_id]


def test_pairs_only_where_the_chosen_side_was_preferred(store):
    three = ("Hello there.", "You idiot.", "Hi!")
    for i, (labels, texts) in enumerate([
            (("accept", "reject", "reject"), three),  # q0: prefer
            (("reject",), ("Go away.",)),  # q1: a lone candidate, accepted: no pair
            (("reject", "reject"), ("Same.", "Same.")),  # q2: equal texts: no pair
            (("accept", "reject", "accept"), three),  # q3: accept / q4 reject
            (("accept", "reject", "accept"), three),
            (("reject",), ("Mail bob@x.org",))]):  # q5: revise
        rid = f"q{i}"
        store.record("run", outcome(rid, labels=labels, escalate=True), request=request(
            rid, *texts))
    assert submit(store, "q0", "prefer", chosen="c3") == [("Hi!", "Hello there."),
                                                         ("Hi!", "You idiot.")]
    assert submit(store, "q1", "accept") == []
    assert submit(store, "q2", "prefer", chosen="c1") == []
    # accept c1: over what the panel rejected (c2), not over c3 which it accepted
    assert submit(store, "q3", "accept", chosen="c1") == [("Hello there.", "You idiot.")]
    # reject c1: what the panel accepted (c3) over it
    assert submit(store, "q4", "reject", chosen="c1") == [("Hi!", "Hello there.")]
    assert submit(store, "q5", "revise", revision="Mail [redacted]") == [
        ("Mail [redacted]", "Mail bob@x.org")]
    rows = store.preferences(source="review")
    assert all(p["source"] == "review" and p["prompt"].startswith("prompt of q") for p in rows)
    assert rows[0]["meta"]["verdict"] == "prefer" and rows[0]["meta"]["reviewer"] == "ann"
    assert all(p["chosen"] != p["rejected"] for p in rows)


def test_a_rejected_draft_gives_the_accepted_candidate_a_pair():
    item = {"prompt": "p", "accepted_candidate": None, "delivered_draft": None,
            "candidates": [{"id": "c1", "text": "A", "panel": "reject"}],
            "drafts": [{"id": "d1", "text": "A'", "parent": "c1", "panel": "reject"}]}
    assert [(g, b) for g, b, _ in review_pairs(item, "accept")] == [("A", "A'")]
    assert review_pairs(item, "reject") == []  # nothing the panel accepted


def test_add_preferences_and_filters(store):
    t0 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    rows = [{"run_id": "run", "request_id": f"q{i}", "prompt": "p", "chosen": f"good {i}",
             "rejected": f"bad {i}", "source": src, "meta": {"agreement": 0.5 + i / 10},
             "created_at": t0 + i * 3600}
            for i, src in enumerate(["revision", "pairwise", "revision"])]
    assert store.add_preferences(rows) == 3
    assert [p["request_id"] for p in store.preferences(source="revision")] == ["q0", "q2"]
    assert [p["request_id"] for p in store.preferences(since="2024-01-01T01:00:00+00:00",
                                                       until=t0 + 2 * 3600)] == ["q1"]
    assert store.preferences(run_id="other") == []
    assert store.preferences()[2]["meta"] == {"agreement": 0.7}
    for bad in ({"chosen": "x", "rejected": "x", "source": "review", "prompt": "p"},
                {"chosen": "x", "rejected": "y", "source": "gold", "prompt": "p"},
                {"chosen": "", "rejected": "y", "source": "review", "prompt": "p"}):
        with pytest.raises(ValueError):
            store.add_preferences([rows[0], bad])  # nothing of the batch is written
    assert len(store.preferences()) == 3
    with pytest.raises(sqlite3.IntegrityError), store.conn:  # the table refuses it too
        store.conn.execute("INSERT INTO preferences(prompt, chosen, rejected, source, meta, "
                           "created_at) VALUES ('p', 'x', 'x', 'review', '{}', 0)")


# ------------------------------------------------------------------ competences
def test_competences_and_their_history(store):
    store.set_competence("j1", "accept", 2.0, 1.0)
    store.set_competence("j1", "reject", 2.0, 1.0)
    store.set_competence("j1", "accept", 2.0, 4.0, review_id=None)
    store.set_competence("j2", "accept", 5.0, 1.0)
    assert store.competences() == {"j1": {"accept": (2.0, 4.0), "reject": (2.0, 1.0)},
                                   "j2": {"accept": (5.0, 1.0)}}
    hist = store.competence_history("j1")
    assert [(h["label"], h["beta"]) for h in hist] == [("accept", 1.0), ("reject", 1.0),
                                                       ("accept", 4.0)]
    assert [h["seq"] for h in hist] == sorted(h["seq"] for h in hist)
    assert len(store.competence_history()) == 4
    for a, b in [(float("nan"), 1.0), (1.0, -1.0), (float("inf"), 1.0)]:
        with pytest.raises(ValueError):
            store.set_competence("j1", "accept", a, b)
    assert store.competences()["j1"]["accept"] == (2.0, 4.0)


def test_consensus_run_defaults_to_the_user_data_directory_and_says_so(tmp_path):
    """No --store: the store is consensus.sqlite under the user's data directory (platformdirs
    honours XDG_DATA_HOME); --resume with nothing to resume names it and exits 2 before Ray."""
    import os

    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.run(
        [sys.executable, "-m", "consensus.cli.app", "run", "scenarios/safety_smoke.yaml",
         "--out", str(tmp_path / "out"), "--resume"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False, env=env)
    assert proc.returncode == 2, proc.stderr
    said = " ".join(proc.stderr.split())
    where = tmp_path / "data" / "consensus" / "consensus.sqlite"
    assert f"nothing to resume: no unfinished run of scenario 'safety_smoke' in the store {where}" \
        in said
    assert where.exists() and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "consensus.sqlite").exists()
