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
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=600)
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


def test_every_registered_strategy_is_listed():
    from strategies.registry import DEFAULT_STRATEGIES

    proc = subprocess.run([sys.executable, "-m", "consensus.cli.app", "strategies"],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, _ in DEFAULT_STRATEGIES:
        assert name in proc.stdout
    assert {"dawid_skene", "calibrated", "log_odds", "bradley_terry"} <= dict(DEFAULT_STRATEGIES).keys()


def test_compare_runs_every_registered_strategy_against_the_bayes_ceiling(tmp_path):
    """The default contenders are all registered strategies; learners see 20% gold."""
    from strategies.registry import DEFAULT_STRATEGIES

    proc = cli("compare", "scenarios/sim_correlated.yaml", "--splits", "3",
               "--out", str(tmp_path), "--json")
    rows = {r["contender"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {n for n, _ in DEFAULT_STRATEGIES} | {"bayes_optimal"}
    bayes = rows["bayes_optimal"]["accuracy"]
    # every contender is scored on the same requests: those some split held out
    assert len({r["n_scored"] for r in rows.values()}) == 1
    assert 900 < rows["majority"]["n_scored"] < 1000
    # a correlated herd misleads majority and unsupervised EM; a few gold labels fix it
    assert rows["calibrated"]["accuracy"] >= bayes - 0.02
    assert rows["calibrated"]["accuracy"] >= rows["majority"]["accuracy"] + 0.15
    assert rows["calibrated"]["accuracy"] >= rows["dawid_skene"]["accuracy"] + 0.15
    fitted = json.loads((tmp_path / "compare.json").read_text())["fitted"]
    assert set(fitted["calibrated"]["weights_"]) == {
        "leader", "echo1", "echo2", "echo3", "echo4", "expert1", "expert2", "expert3",
        "contrarian"}
    assert fitted["calibrated"]["weights_"]["contrarian"] < 0  # worth contradicting


def test_compare_by_category_fits_learners_within_each_llmbar_set(tmp_path):
    proc = cli("compare", "scenarios/llmbar.yaml", "--strategies", "majority,log_odds",
               "--splits", "3", "--by-category", "--out", str(tmp_path), "--json")
    rows = json.loads(proc.stdout)
    sets = {"Natural", "Adversarial/Neighbor", "Adversarial/GPTInst", "Adversarial/GPTOut",
            "Adversarial/Manual", "MT-Bench", "FairEval", "LLMEval^2"}
    assert {r["category"] for r in rows} == sets and len(rows) == 16
    acc = {(r["category"], r["contender"]): r["split_accuracy_mean"] for r in rows}
    # Neighbor: most judges prefer the distractor; gold-fitted log-odds weights turn them round
    assert acc[("Adversarial/Neighbor", "majority")] < 0.5
    assert acc[("Adversarial/Neighbor", "log_odds")] > 0.85
    with (tmp_path / "compare.csv").open() as fh:
        assert next(csv.DictReader(fh))["category"] in sets


def test_run_deploys_a_strategy_fitted_beforehand_on_labelled_votes(tmp_path):
    """`fit_on`: calibrated learns on sim_herd's gold, then decides new items without theirs."""
    proc = cli("run", "scenarios/sim_herd_live.yaml", "--out", str(tmp_path / "cal"), "--json")
    fitted = json.loads(proc.stdout)
    assert fitted["fitted_on"].startswith("sim_herd (1200 gold ballots")
    proc = cli("run", "scenarios/sim_herd_live.yaml", "--strategy", "majority",
               "--out", str(tmp_path / "maj"), "--json")
    plain = json.loads(proc.stdout)
    assert plain["fitted_on"] is None  # majority learns nothing: fit_on is ignored (and logged)
    # the herd misleads majority; weights learned on other labelled items carry over
    assert plain["accuracy"] < 0.65 and fitted["accuracy"] > plain["accuracy"] + 0.2


def test_fit_on_errors_name_the_file_and_field(tmp_path):
    live = (ROOT / "scenarios" / "sim_herd_live.yaml").read_text()
    bad = tmp_path / "live.yaml"
    bad.write_text(live.replace("fit_on: sim_herd.yaml", "fit_on: missing.yaml"))
    proc = subprocess.run([sys.executable, "-m", "consensus.cli.app", "validate", str(bad)],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 2 and "fit_on" in proc.stderr and "missing.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tune_and_compare_a_debate_on_its_final_rounds(tmp_path):
    scenario = tmp_path / "deb.yaml"
    scenario.write_text(
        "name: deb\ndataset:\n  simulate: {n_items: 300, seed: 2}\npolicy: {quorum: 1}\n"
        "strategy: {name: debate, rounds: 3, stop: none}\npanel:\n" + "".join(
            f"  - {{name: j{i}, kind: simulated, default_accuracy: 0.65, seed: {i}, "
            f"conformity: 0.3, truth_advantage: 0.5}}\n" for i in range(5)))
    cli("tune", str(scenario), "--max-harm", "0.5", "--out", str(tmp_path / "t"))
    data = json.loads((tmp_path / "t" / "tune.json").read_text())
    at_half = next(p for p in data["sweep"] if abs(p["threshold"] - 0.5) < 1e-9)
    proc = cli("compare", str(scenario), "--strategies", "majority", "--out",
               str(tmp_path / "c"), "--json")
    (majority,) = [r for r in json.loads(proc.stdout) if r["contender"] == "majority"]
    assert data["strategy"] == "debate"
    assert at_half["accuracy"] > majority["accuracy"] + 0.03  # the debated votes, not round 1
