"""The store keeps every recorded decision, even when the process dies without closing it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from consensus.store import DuplicateDecision, Store
from consensus.types import Decision, Outcome, Vote
from tests.conftest import ROOT


def outcome(i: int) -> Outcome:
    v = Vote(judge="j", request_id=f"r{i}", candidate_id="a", label="reject", confidence=0.9,
             critique="nope")
    d = Decision(request_id=f"r{i}", subject="a", label="reject", probability=0.9,
                 strategy="majority")
    return Outcome(request_id=f"r{i}", action="block", output="no", reason="rejected",
                   decisions=(d,), votes=(v,), latency_s=0.01)


def test_round_trip(tmp_path):
    s = Store(tmp_path / "c.sqlite")
    s.start_run("run", scenario="t", strategy="majority", config={"a": 1})
    for i in range(3):
        s.record("run", outcome(i))
    back = s.outcomes("run")
    assert [o.request_id for o in back] == ["r0", "r1", "r2"]
    assert back[1] == outcome(1)  # votes, critique, decisions: nothing lost


def test_hard_crash_loses_no_recorded_decision(tmp_path):
    db = tmp_path / "c.sqlite"
    script = textwrap.dedent(f"""
        import os
        from consensus.store import Store
        from tests.test_store import outcome
        s = Store({str(db)!r})
        s.start_run("run", scenario="t", strategy="majority", config={{}})
        for i in range(25):
            s.record("run", outcome(i))
        os._exit(9)  # no close, no commit beyond the per-decision transactions
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=False, timeout=60)
    assert proc.returncode == 9
    s = Store(db)
    assert s.count_decisions("run") == 25
    assert s.outcomes("run")[24] == outcome(24)


def test_duplicate_decision_is_refused_and_keeps_the_first(tmp_path):
    import pytest

    s = Store(tmp_path / "c.sqlite")
    s.start_run("run", scenario="t", strategy="majority", config={})
    s.record("run", outcome(0))
    with pytest.raises(DuplicateDecision, match="'r0'"):
        s.record("run", outcome(0))
    assert s.count_decisions("run") == 1 and len(s.outcomes("run")[0].votes) == 1
    assert s.count_votes("run") == 1
