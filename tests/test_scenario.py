"""Bad input gets a clear error: file, field path, problem; the CLI exits 2 without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.errors import ConfigError
from consensus.scenario import load_scenario, scenario_json_schema
from tests.conftest import ROOT

GOOD_REQ = {"id": "r1", "prompt": "hi", "candidates": [{"id": "a", "text": "hello"}],
            "gold": {"a": "accept"}}


def write(tmp: Path, yaml_text: str, requests=(GOOD_REQ,)) -> Path:
    (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    p = tmp / "scenario.yaml"
    p.write_text(yaml_text)
    return p


BASE = "name: t\ndataset: d.jsonl\npanel:\n  - {name: s, kind: simulated}\n"


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return info.value


def test_valid_scenario_loads(tmp_path):
    s = load_scenario(write(tmp_path, BASE + "strategy: {name: threshold, k: 1, share: null}\n"))
    assert s.name == "t" and len(s.requests) == 1 and s.strategy.name == "threshold"
    assert s.judges[0].kind == "simulated"


@pytest.mark.parametrize("text, field, needle", [
    (BASE + "strategy: nope\n", "strategy", "valid strategies: majority, weighted, veto"),
    ("name: t\ndataset: d.jsonl\npanel:\n  - {name: s, kind: oracle}\n", "panel.0.kind",
     "valid kinds: classifier, factuality, harm, llm, replay, rules, simulated"),
    ("name: t\ndataset: d.jsonl\npanel:\n  - {name: s, kind: simulated, default_accuracy: 2}\n",
     "panel.0.default_accuracy", "less than or equal to 1"),
    ("name: t\ndataset: d.jsonl\npanel:\n  - {name: s, kind: simulated, colour: red}\n",
     "panel.0.colour", "Extra inputs are not permitted"),
    (BASE + "policy: {on_reject: explode}\n", "policy.on_reject", "'explode'"),
    (BASE + "strategy: {name: majority, tie_rule: coin}\n", "strategy.tie_rule", "'coin'"),
    (BASE + "strategy: {name: majority, tie: coin}\n", "strategy", "unknown parameter"),
    ("name: t\npanel:\n  - {name: s, kind: simulated}\n", "dataset", "Field required"),
    (BASE + "  - {name: s, kind: simulated}\n", "panel", "duplicate judge name"),
])
def test_errors_name_file_field_and_problem(tmp_path, text, field, needle):
    err = error_of(write(tmp_path, text))
    assert err.source and err.source.endswith("scenario.yaml")
    assert err.field == field
    assert needle in err.message, err.message


def test_yaml_syntax_error_names_line(tmp_path):
    err = error_of(write(tmp_path, "name: t\npanel: [\n  oops: : :\n"))
    assert "scenario.yaml" in str(err) and "line" in err.message


def test_bad_dataset_line_names_file_line_and_field(tmp_path):
    bad = {"id": "r2", "prompt": "x", "candidates": [{"id": "a", "text": "t"}],
           "gold": {"a": "maybe"}}
    err = error_of(write(tmp_path, BASE, requests=(GOOD_REQ, bad)))
    assert err.source.endswith("d.jsonl:2") and "maybe" in err.message


def test_unknown_replay_judge_is_named(tmp_path):
    (tmp_path / "v.csv").write_text("request_id,candidate_id,judge,label\nr1,a,x,accept\n")
    text = ("name: t\ndataset: d.jsonl\npanel:\n"
            "  - {kind: replay, source: v.csv, expand: [x, ghost]}\n")
    err = error_of(write(tmp_path, text))
    assert "ghost" in err.message and err.field == "panel.0.expand"


def test_json_schema_covers_judge_kinds():
    schema = scenario_json_schema()
    kinds = set()
    for s in schema["properties"]["panel"]["items"]["anyOf"]:
        if "$ref" in s:  # self-referencing specs (simulated judges copy other judges)
            s = s["$defs"][s["$ref"].rsplit("/", 1)[1]]
        kinds.add(s["properties"]["kind"]["default"])
    assert kinds == {"rules", "classifier", "factuality", "harm", "llm", "replay", "simulated"}


def test_cli_reports_config_error_without_traceback(tmp_path):
    p = write(tmp_path, BASE + "strategy: nope\n")
    proc = subprocess.run([sys.executable, "-m", "consensus.cli.app", "validate", str(p)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 2
    assert "scenario.yaml: strategy: unknown strategy 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_validate_ok_on_shipped_scenarios():
    files = sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml"))
    proc = subprocess.run([sys.executable, "-m", "consensus.cli.app", "validate", *files],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(" ok (") == len(files)
