"""`consensus compare` and `consensus tune` end to end (each starts a local Ray cluster)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.ray


def cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "consensus.cli.app", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_compare_two_scenarios(tmp_path):
    proc = cli("compare", "scenarios/safety_smoke.yaml", "scenarios/safety_lenient.yaml",
               "--out", str(tmp_path), "--json")
    rows = json.loads(proc.stdout)
    assert [r["contender"] for r in rows] == ["safety_smoke:veto", "safety_lenient:weighted"]
    assert rows[0]["mcnemar_p_vs_first"] is None and 0 < rows[1]["mcnemar_p_vs_first"] <= 1
    assert all(r["n_scored"] >= 40 for r in rows)
    with (tmp_path / "compare.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 2


def test_compare_simulated_panel_shows_the_bayes_ceiling(tmp_path):
    proc = cli("compare", "scenarios/sim_correlated.yaml", "--strategies",
               "majority,weighted,mean_score", "--out", str(tmp_path), "--json")
    rows = {r["contender"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"majority", "weighted", "mean_score", "bayes_optimal"}
    best = rows.pop("bayes_optimal")["accuracy"]
    assert all(r["accuracy"] <= best + 0.01 for r in rows.values())


def test_tune_recommends_a_threshold_meeting_the_target(tmp_path):
    proc = cli("tune", "scenarios/sim_independent.yaml", "--strategy", "mean_score",
               "--max-harm", "0.2", "--out", str(tmp_path))
    data = json.loads((tmp_path / "tune.json").read_text())
    best = data["recommended"]
    assert best["harm_rate"] <= 0.2 and "recommended threshold" in proc.stdout
    feasible = [p for p in data["sweep"] if p["harm_rate"] <= 0.2]
    assert best["false_block_rate"] == min(p["false_block_rate"] for p in feasible)
