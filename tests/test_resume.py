"""`consensus run --resume`: a real run killed with SIGKILL midway keeps every committed decision
whole (none partial), and the resumed run's outputs equal an uninterrupted run's.

Everything here is a real `consensus run` subprocess on a local Ray cluster, with an offline
panel of simulated judges (each call sleeps 50 ms, so 300 requests take a few seconds: long enough
to kill the run when about half are committed, which the test sees by polling the store file).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from consensus.types import Outcome
from tests.conftest import ROOT

pytestmark = pytest.mark.ray

N = 300
JUDGES = 5
SCENARIO = f"""
name: resume_sim
description: Five simulated judges, 50 ms a call; a run of {N} requests to kill and resume.
dataset:
  simulate: {{n_items: {N}, prior: {{accept: 0.6, reject: 0.4}}, seed: 5}}
panel:
  - {{name: a, kind: simulated, default_accuracy: 0.85, seed: 1, delay_s: 0.05}}
  - {{name: b, kind: simulated, default_accuracy: 0.75, seed: 2, delay_s: 0.05}}
  - {{name: c, kind: simulated, default_accuracy: 0.7, seed: 3, abstain_rate: 0.3, delay_s: 0.05}}
  - {{name: d, kind: simulated, default_accuracy: 0.65, seed: 4, abstain_rate: 0.3, delay_s: 0.05}}
  - {{name: e, kind: simulated, default_accuracy: 0.6, seed: 5, abstain_rate: 0.3, delay_s: 0.05}}
strategy: majority
policy: {{quorum: 4, on_no_consensus: escalate}}
concurrency: 4
"""


def consensus_run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consensus.cli.app", "run", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout, check=False)


def committed(store: Path) -> int:
    """Decisions committed so far (a reader of the WAL file, beside the writing run)."""
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def essentials(out: Path) -> dict[str, tuple]:
    """Per request: action, accepted candidate, output and each decision's subject and label
    (what must not depend on whether the run was interrupted)."""
    rows = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["request_id"] for r in rows}), "a request appears twice"
    return {r["request_id"]: (r["action"], r["accepted_candidate"], r["output"],
                              tuple((d["subject"], d["label"]) for d in r["decisions"]))
            for r in rows}


def table(path: Path) -> list[tuple[str, ...]]:
    """The rows of a CSV the run wrote, sorted, without the columns that time things."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, path
    return sorted(tuple(v for k, v in r.items() if k != "latency_s") for r in rows)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "resume_sim.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def uninterrupted(scenario, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("whole")
    proc = consensus_run(scenario, "--out", out / "out", "--store", out / "s.sqlite", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "out", json.loads(proc.stdout)


@pytest.fixture(scope="module")
def killed(scenario, tmp_path_factory) -> tuple[Path, Path, int]:
    """A run SIGKILLed once about half its requests are committed: (out, store, committed)."""
    root = tmp_path_factory.mktemp("killed")
    out, store = root / "out", root / "s.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "consensus.cli.app", "run", str(scenario), "--out", str(out),
         "--store", str(store)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while committed(store) < N // 2:
            assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr}"
            assert time.monotonic() < deadline, "the run did not reach half in time"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its Ray workers, at once
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(1)  # Ray's raylet/GCS of that session die with their parent
    n = committed(store)
    assert N // 2 <= n < N, f"killed with {n} of {N} committed: not midway"
    return out, store, n


def test_a_killed_run_leaves_every_committed_decision_whole(killed):
    _, store, n = killed
    conn = sqlite3.connect(store)
    ((run_id, summary),) = conn.execute("SELECT run_id, summary FROM runs").fetchall()
    assert summary is None  # killed: it never finished
    decisions = conn.execute("SELECT request_id, outcome FROM decisions").fetchall()
    assert len(decisions) == n
    votes = Counter(r for (r,) in conn.execute("SELECT request_id FROM votes"))
    cands = Counter(r for (r,) in conn.execute("SELECT request_id FROM candidates"))
    requests = {r for (r,) in conn.execute("SELECT request_id FROM requests")}
    ids = {r for r, _ in decisions}
    assert requests == ids and set(votes) == ids and set(cands) == ids  # no orphan either way
    for rid, blob in decisions:
        o = Outcome.model_validate_json(blob)  # the outcome JSON parses
        assert o.request_id == rid and o.run_id == run_id
        n_cands = cands[rid]
        assert n_cands >= 1 and votes[rid] == JUDGES * n_cands, rid  # every vote, none missing
        assert len(o.decisions) == n_cands
    escalated = {r for (r,) in conn.execute("SELECT request_id FROM escalations")}
    actions = {r: Outcome.model_validate_json(b).action for r, b in decisions}
    assert escalated == {r for r, a in actions.items() if a == "escalate"}
    conn.close()


def test_resume_refuses_a_changed_scenario_and_an_unknown_run(killed, scenario, tmp_path):
    out, store, n = killed
    changed = tmp_path / "resume_sim.yaml"
    changed.write_text(SCENARIO.replace("seed: 5}", "seed: 6}"), encoding="utf-8")
    proc = consensus_run(changed, "--out", out, "--store", store, "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "the scenario changed since run resume_sim-" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = consensus_run(scenario, "--out", out, "--store", store, "--resume-run", "nope-123")
    assert proc.returncode == 2 and "no run 'nope-123'" in proc.stderr
    proc = consensus_run(scenario, "--out", out, "--store", store, "--limit", "10", "--resume")
    assert proc.returncode == 2 and "--limit" in proc.stderr
    assert committed(store) == n  # none of them decided anything


def test_resume_finishes_and_equals_an_uninterrupted_run(
        killed, uninterrupted, scenario, tmp_path):
    out, store, n = killed
    before = sqlite3.connect(store)
    kept = dict(before.execute("SELECT request_id, outcome FROM decisions").fetchall())
    before.close()
    proc = consensus_run(scenario, "--out", out, "--store", store, "--resume", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = " ".join(proc.stderr.split())
    assert f"resuming: {n} decided, {N - n} to go; store {store}" in said
    summary = json.loads(proc.stdout)
    whole_out, whole = uninterrupted

    conn = sqlite3.connect(store)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # the same run id
    after = dict(conn.execute("SELECT request_id, outcome FROM decisions").fetchall())
    assert len(after) == N
    assert all(after[r] == blob for r, blob in kept.items())  # nothing committed was redecided
    assert conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == \
        conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] * JUDGES
    conn.close()

    assert essentials(out) == essentials(whole_out)
    assert len(essentials(out)) == N
    for key in ("n_requests", "n_ballots", "accuracy", "intervention_rate", "actions",
                "fleiss_kappa", "krippendorff_alpha", "no_consensus_rate"):
        assert summary[key] == whole[key], key
    assert summary["status"] == "complete" and summary["n_requests"] == N
    assert json.loads((out / "summary.json").read_text()) == summary
    for name in ("votes.csv", "decisions.csv"):  # the same rows (latency aside), any order
        assert table(out / name) == table(whole_out / name), name

    again = consensus_run(scenario, "--out", out, "--store", store, "--resume")
    assert again.returncode == 2, again.stderr
    assert "nothing to resume: no unfinished run of scenario 'resume_sim'" in again.stderr
