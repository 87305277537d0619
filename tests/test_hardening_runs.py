"""Hardening of runs: output folders never mix runs, interrupted runs say so, secrets never
reach a stored file, a panel that cannot start fails with a message, and every wait is bounded
by the judges' own timeouts (on a real local Ray cluster where it takes one)."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consensus.coordinator import GRACE_S, Panel
from consensus.errors import ConfigError
from consensus.redact import redact
from consensus.reports.files import RUN_FILES, RunFolder
from consensus.scenario import load_scenario
from consensus.types import Vote
from judges.base import JudgeSpecBase
from judges.simulated import SimulatedJudgeSpec
from tests.conftest import ROOT

KEY = "sk-proj-Zq8XwV3tU7sR1pO5nM9lK2jH6gF4dS0a"


def sim_scenario(folder: Path, *, n: int = 12, delay: float = 0.0, extra: str = "") -> Path:
    path = folder / "sim.yaml"
    path.write_text(
        f"name: sim\ndataset: {{simulate: {{n_items: {n}, seed: 3}}}}\nconcurrency: 4\npanel:\n"
        f"  - {{name: a, kind: simulated, default_accuracy: 0.9, delay_s: {delay:g}}}\n"
        f"  - {{name: b, kind: simulated, default_accuracy: 0.8, seed: 1}}\n{extra}")
    return path


# --- output folders --------------------------------------------------------------------------

def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    with RunFolder(tmp_path / "out") as first:
        first.claim("run-1")
        with pytest.raises(ConfigError) as info, RunFolder(tmp_path / "out"):
            pass
    assert "run run-1" in info.value.message and info.value.field == "--out"
    with RunFolder(tmp_path / "out"):  # released: the folder can be used again
        pass


def test_the_cli_refuses_a_busy_folder_before_starting_ray(tmp_path, capsys):
    from consensus.cli.app import main

    with RunFolder(tmp_path / "out") as held:
        held.claim("run-1")
        with pytest.raises(SystemExit) as info:
            main(["run", str(sim_scenario(tmp_path)), "--out", str(tmp_path / "out")])
    assert info.value.code == 2 and "is writing to this output folder" in capsys.readouterr().err


def test_an_earlier_runs_files_are_removed_when_a_run_starts(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in RUN_FILES:
        (out / name).write_text("old run")
    (out / "notes.txt").write_text("mine")
    with RunFolder(out):
        assert not any((out / name).exists() for name in RUN_FILES)
    assert (out / "notes.txt").read_text() == "mine"


# --- bounded waits ----------------------------------------------------------------------------

def test_each_host_waits_for_its_own_judges_only():
    specs: list[JudgeSpecBase] = [SimulatedJudgeSpec(name="fast", timeout_s=1.0),
             SimulatedJudgeSpec(name="slow", timeout_s=600.0, host="slow-host"),
             SimulatedJudgeSpec(name="fast2", timeout_s=2.5)]
    panel = Panel(specs=specs, routes={"fast": "simulated", "fast2": "simulated",
                                       "slow": "slow-host"})
    assert panel.host_limits() == {"simulated": 2.5 + GRACE_S, "slow-host": 600.0 + GRACE_S}


# --- secrets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    f"Incorrect API key provided: {KEY}.",
    f"Incorrect API key provided: sk-proj-{'*' * 20}{KEY[-4:]}.",
    f"key ending ...{KEY[-10:]} was rejected",
    f"Authorization: Bearer {KEY[8:]}",
])
def test_key_like_text_is_redacted(text):
    clean = redact(text, secrets=[KEY])
    assert KEY[-8:] not in clean and KEY[:12] not in clean and "***" in clean


def test_votes_redact_their_text_when_built():
    v = Vote.abstain(judge="j", request_id="q", candidate_id="a", kind="provider_error",
                     reason=f"401: Incorrect API key provided: {KEY}")
    assert KEY not in (v.abstain_reason or "") and "sk-proj" not in (v.abstain_reason or "")



@pytest.mark.ray
def test_no_stored_file_holds_a_key(ray_session, tmp_path):
    """A provider's text recorded with the votes (here: a replay CSV's reasons) is redacted in
    votes.csv, decisions.jsonl, the report and the store."""
    from consensus.runner import run_scenario

    (tmp_path / "data.jsonl").write_text("".join(json.dumps(
        {"id": f"r{i}", "prompt": "p", "candidates": [{"id": "a", "text": "t"}],
         "gold": {"a": "accept"}}) + "\n" for i in range(3)))
    with (tmp_path / "votes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["request_id", "candidate_id", "judge", "label", "reason"])
        for i in range(3):
            w.writerow([f"r{i}", "a", "gpt", "accept", f"provider said: key {KEY} is fine"])
        w.writerow(["r0", "a", "gpt2", "", f"Error: Incorrect API key sk-proj-****{KEY[-6:]}"])
        w.writerow(["r1", "a", "gpt2", "accept", ""])  # a judge needs one usable vote
    path = tmp_path / "s.yaml"
    path.write_text("name: leak\ndataset: data.jsonl\npanel:\n"
                    "  - {name: gpt, kind: replay, source: votes.csv}\n"
                    "  - {name: gpt2, kind: replay, source: votes.csv}\n")
    out = tmp_path / "out"
    run_scenario(load_scenario(path), out)
    db = sqlite3.connect(out / "consensus.sqlite")
    stored = "\n".join(str(row) for table in ("runs", "decisions", "votes", "requests",
                                               "candidates", "interventions")
                       for row in db.execute(f"SELECT * FROM {table}"))
    for text in [stored, *((out / n).read_text() for n in RUN_FILES)]:
        assert KEY[-6:] not in text and KEY[:14] not in text
    assert "***" in (out / "votes.csv").read_text()


# --- panels that cannot start, runs that are interrupted --------------------------------------

@pytest.mark.ray
def test_a_panel_asking_for_more_cpus_than_the_cluster_fails_at_once(ray_session):
    spec = SimulatedJudgeSpec(name="big", num_cpus=64)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        Panel.start([spec], base_dir=ROOT)
    assert "num_cpus=64" in info.value.message and time.perf_counter() - start < 30


@pytest.mark.ray
def test_an_interrupted_run_says_so_and_keeps_what_it_decided(ray_session, tmp_path):
    from consensus.runner import run_scenario
    from consensus.store import Store

    seen: list[str] = []

    def stop_after_three(req, outcome):
        seen.append(req.id)
        if len(seen) == 3:  # any error stops a run the same way; Ctrl-C is tested for real
            raise RuntimeError("stopped")  # below, in a process of its own

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="stopped"):
        run_scenario(load_scenario(sim_scenario(tmp_path, n=40)), out,
                     on_progress=stop_after_three, concurrency=1)
    summary = json.loads((out / "summary.json").read_text())
    lines = [json.loads(x) for x in (out / "decisions.jsonl").read_text().splitlines()]
    assert summary["status"] == "interrupted" and summary["n_requests"] == 3
    assert len(lines) == 3 and {x["run_id"] for x in lines} == {summary["run_id"]}
    assert Store(out / "consensus.sqlite").count_decisions(summary["run_id"]) == 3
    with (out / "votes.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 3 * 2


@pytest.mark.ray
def test_ctrl_c_prints_interrupted_and_exits_130(tmp_path):
    """A real SIGINT to a real `consensus run`."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "consensus.cli.app", "run",
         str(sim_scenario(tmp_path, n=400, delay=0.2)), "--out", str(out)],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    deadline = time.monotonic() + 120
    jsonl = out / "decisions.jsonl"
    while time.monotonic() < deadline and not (jsonl.exists() and jsonl.read_text().count("\n")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["n_requests"] < 400


@pytest.mark.parametrize("text", [
    "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "gsk_8f7Gh2Jk4Lm6Np8Qr0St2Uv4Wx6Yz8Ab0Cd2Ef4Gh6Jk8Lm0N",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P",
    'API_KEY="Qw8Er7Ty6Ui5Op4As3Df2Gh"',
    '"api_key": "Zx1Cv2Bn3Mm4Lk5Jh6Gf7Ds"',
    "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "Authorization: Token 9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "http://admin:Sup3rS3cretPassw0rd@127.0.0.1:18777/v1",
])
def test_more_key_formats_are_redacted(text):
    secret = text.split("=")[-1].split(": ")[-1].strip('"').split("://")[-1].split("@")[0]
    assert secret[-10:] not in redact(text), redact(text)


@pytest.mark.ray
def test_keys_the_process_holds_are_masked_in_every_stored_file(tmp_path):
    """A value of a secret-named environment variable, quoted by a recorded judge, and keys in
    the scenario's own text (stored as the run's config) never reach a file."""
    held = "zq9Xk2LmP4vR7tY1uW3eHj6NbC"
    (tmp_path / "data.jsonl").write_text(json.dumps(
        {"id": "r0", "prompt": "p", "candidates": [{"id": "a", "text": "t"}]}) + "\n")
    (tmp_path / "votes.csv").write_text(
        "request_id,candidate_id,judge,label,reason\n"
        f"r0,a,gpt,accept,the operator key is {held}\n")
    path = tmp_path / "s.yaml"
    path.write_text("name: held\ndescription: deployed with sk-proj-DESCRIPTIONkey0123456789ab\n"
                    "dataset: data.jsonl\npanel:\n  - {name: gpt, kind: replay, source: votes.csv}\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "consensus.cli.app", "run", str(path), "--out", str(out),
         "--store", str(out / "consensus.sqlite"), "--log-level", "debug"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "FAKE_SERVICE_KEY": held, "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    db = sqlite3.connect(out / "consensus.sqlite")
    stored = "\n".join(str(row) for table in ("runs", "decisions", "votes", "requests",
                                               "candidates", "interventions")
                       for row in db.execute(f"SELECT * FROM {table}"))
    for text in [stored, proc.stderr, proc.stdout, *((out / n).read_text() for n in RUN_FILES)]:
        assert held[-8:] not in text and "DESCRIPTIONkey" not in text


@pytest.mark.ray
def test_a_panel_with_no_runnable_judge_is_an_error_not_a_run(ray_session, tmp_path,
                                                              monkeypatch):
    from consensus.runner import run_scenario

    monkeypatch.delenv("CONSENSUS_ABSENT_KEY", raising=False)
    path = tmp_path / "s.yaml"
    path.write_text("name: none\ndataset: {simulate: {n_items: 3}}\npanel:\n"
                    "  - {name: a, kind: simulated, requires_env: [CONSENSUS_ABSENT_KEY]}\n")
    with pytest.raises(ConfigError, match="no judge of the panel can run"):
        run_scenario(load_scenario(path), tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()
