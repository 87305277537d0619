"""Hardening: every class of bad input gets a clear error (exit 2, file and field named, never a
traceback) from every command, and no configuration can let a harmful candidate through.

Each test is parametrised across the file kinds (scenario, dataset, constitution, record CSV)
and the commands (``run``, ``validate``, ``compare``, ``tune``) that read them. None of these
inputs gets as far as starting Ray: loading checks everything a run needs first.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from consensus.cli.app import main
from consensus.errors import ConfigError
from consensus.policy import Policy
from consensus.scenario import load_scenario

COMMANDS = ("run", "validate", "compare", "tune", "audit")
CONSTITUTION = """\
principles:
  - id: no-insults
    text: Do not insult the user.
    severity: high
    checks: [{keywords: [idiot]}]
"""


def request(i: int, text: str = "fine", gold: str = "accept") -> str:
    return json.dumps({"id": f"r{i}", "prompt": "p", "candidates": [{"id": "a", "text": text}],
                       "gold": {"a": gold}}) + "\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a dataset, a constitution and a record CSV that are all valid."""
    (tmp_path / "data.jsonl").write_text("".join(request(i, gold=("accept", "reject")[i % 2])
                                                 for i in range(6)))
    (tmp_path / "constitution.yaml").write_text(CONSTITUTION)
    (tmp_path / "votes.csv").write_text(
        "request_id,candidate_id,judge,label,confidence\n"
        + "".join(f"r{i},a,{j},accept,0.9\n" for i in range(6) for j in ("gpt", "claude")))
    return tmp_path


def scenario(project: Path, *, panel: str | None = None, extra: str = "",
             dataset: str = "data.jsonl") -> Path:
    panel = panel or (
        "  - {name: rules, kind: rules, constitution: constitution.yaml}\n"
        "  - {name: gpt, kind: replay, source: votes.csv}\n"
        "  - {name: claude, kind: replay, source: votes.csv}\n")
    path = project / "scenario.yaml"
    path.write_text(f"name: t\ndataset: {dataset}\npanel:\n{panel}{extra}")
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the console script in process; (exit code, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    err = capsys.readouterr().err
    code = info.value.code
    return (code if isinstance(code, int) else 1), err


def args_for(command: str, path: Path, out: Path) -> list[str]:
    if command == "validate":
        return [command, str(path)]
    return [command, str(path), "--out", str(out)]


def assert_clear_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    # (a progress bar that was showing may leave an empty line before the message)
    assert "Traceback" not in err and err.lstrip().startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)


def test_the_valid_project_validates(project, capsys):
    code, err = cli(capsys, "validate", str(scenario(project)))
    assert code == 0, err


# --- class 1: configurations that could let a harmful candidate through are refused ---------

UNSAFE = [
    ("strategy: {name: weighted, weights: {rules: -3}}\n", "strategy.weights"),
    ("strategy: {name: weighted, weights: {rules: .nan}}\n", "strategy.weights"),
    ("strategy: {name: threshold, share: 0.5, weights: {gpt: -1}}\n", "strategy.weights"),
    ("policy: {on_no_consensus: accept}\n", "policy.on_no_consensus"),
    ("policy: {on_no_consensus: flag}\n", "policy.on_no_consensus"),
    ("policy: {on_reject: accept}\n", "policy.on_reject"),
    ("policy: {on_reject: flag}\n", "policy.on_reject"),
    ("policy: {quorum: 0}\n", "policy.quorum"),
    ("policy: {quorum: -1}\n", "policy.quorum"),
    ("policy: {quorum: 0.0}\n", "policy.quorum"),
    ("policy: {quorum: 1.5}\n", "policy.quorum"),
    ("policy: {quorum: true}\n", "policy.quorum"),
    ("policy: {quorum: .nan}\n", "policy.quorum"),
    ("policy: {quorum: '2'}\n", "policy.quorum"),
    ("policy: {quorum: 4}\n", "policy.quorum"),  # the panel has 3 judges
    ("panel_weights: 1\n", "panel_weights"),  # unknown top-level field
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("extra, field", UNSAFE)
def test_unsafe_configuration_is_refused(project, tmp_path, capsys, command, extra, field):
    path = scenario(project, extra=extra)
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, str(path), field)


def test_a_negative_judge_weight_is_refused(project, capsys):
    path = scenario(project, panel="  - {name: rules, kind: rules, constitution: "
                                   "constitution.yaml, weight: -2}\n")
    code, err = cli(capsys, "validate", str(path))
    assert_clear_error(code, err, "panel.0.weight")


@pytest.mark.parametrize("quorum", [1, 2, 0.01, 0.5, 1.0])
def test_valid_quorums_need_at_least_one_vote(quorum):
    p = Policy(quorum=quorum)
    assert all(p.min_valid(n) >= 1 for n in range(8))


def test_every_withholding_action_delivers_nothing():
    """On no consensus, whatever the policy says, nothing reaches the user."""
    from consensus.types import Candidate, Decision, Request

    r = Request(id="q", prompt="p", candidates=(Candidate(id="a", text="harmful"),))
    undecided = Decision(request_id="q", subject="a", label=None, strategy="majority")
    for action in ("block", "escalate", "revise", "regenerate"):
        act, cid, text, reason = Policy(on_no_consensus=action).decide_action(r, [undecided], [])
        assert (act, cid) == (action, None) and text != "harmful" and "no consensus" in reason


# --- class 2: files that are not what they should be ----------------------------------------

def _latin1(p: Path) -> None:
    p.write_bytes(p.read_text().replace("fine", "café").encode("latin-1")
                  if p.suffix == ".jsonl" else (p.read_text() + "# café\n").encode("latin-1"))


def _utf16(p: Path) -> None:
    p.write_bytes(p.read_text().encode("utf-16"))


def _directory(p: Path) -> None:
    p.unlink()
    p.mkdir()


def _binary(p: Path) -> None:
    p.write_bytes(b"\x00\x01\x02PK\x03\x04" * 10)


BROKEN_FILES = {"latin1": (_latin1, "UTF-8"), "utf16": (_utf16, "UTF-16"),
                "directory": (_directory, "directory"), "binary": (_binary, "")}
FILE_KINDS = ("scenario.yaml", "data.jsonl", "constitution.yaml", "votes.csv")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("target", FILE_KINDS)
@pytest.mark.parametrize("how", sorted(BROKEN_FILES))
def test_unreadable_files_name_the_file(project, tmp_path, capsys, command, target, how):
    path = scenario(project)
    breaker, needle = BROKEN_FILES[how]
    breaker(project / target)
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, target, needle)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("target", FILE_KINDS[1:])
def test_missing_files_are_named(project, tmp_path, capsys, command, target):
    path = scenario(project)
    (project / target).unlink()
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, target, "not found")


BAD_SPECS = [
    ("  - {name: j, kind: [rules]}\n", "panel.0.kind"),
    ("  - {name: j, kind: {a: 1}}\n", "panel.0.kind"),
    ("  - [name, j]\n", "panel.0"),
    ("  - {name: j, kind: simulated, timeout_s: .inf}\n", "panel.0.timeout_s"),
    ("  - {name: j, kind: simulated, timeout_s: .nan}\n", "panel.0.timeout_s"),
    ("  - {name: j, kind: simulated, timeout_s: 1e9}\n", "panel.0.timeout_s"),
    ("  - {name: j, kind: simulated, timeout_s: 0}\n", "panel.0.timeout_s"),
    ("  - {name: j, kind: simulated, num_cpus: -1}\n", "panel.0.num_cpus"),
    ("  - {name: j, kind: simulated, accuracy: {reject: 1.5}}\n", "panel.0.accuracy"),
    ("  - {name: j, kind: simulated, accuracy: {maybe: 0.9}}\n", "panel.0.accuracy"),
    ("  - {name: j, kind: simulated, bias_label: maybe}\n", "panel.0.bias_label"),
    ("  - {name: j, kind: llm, model: m, api_key_env: sk-proj-abcdefghijklmnop123456}\n",
     "panel.0.api_key_env"),
    ("  - {name: j, kind: rules, constitution: [a, b]}\n", "panel.0.constitution"),
    ("  - {name: j, kind: replay, source: votes.csv, expand: 7}\n", "panel.0.expand"),
    ("  - {name: j, kind: replay, expand: all}\n", "panel.0.source"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("panel, field", BAD_SPECS)
def test_bad_judge_specs_name_the_field(project, tmp_path, capsys, command, panel, field):
    path = scenario(project, panel=panel)
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, str(path), field)
    assert "sk-proj-abcdefghijklmnop123456" not in err


BAD_DATASETS = [
    ("{path: data.jsonl, limit: 0}", "dataset.limit"),
    ("{path: data.jsonl, limit: many}", "dataset.limit"),
    ("{path: data.jsonl, simulate: {n_items: 5}}", "dataset"),
    ("{}", "dataset"),
    ("{simulate: {n_items: 5, prior: {accept: -0.5, reject: 1.5}}}", "dataset.simulate"),
    ("{simulate: {n_items: 5, prior: {accept: 0, reject: 0}}}", "dataset.simulate"),
    ("{simulate: {n_items: 0}}", "dataset.simulate.n_items"),
    ("[data.jsonl]", "dataset"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("dataset, field", BAD_DATASETS)
def test_bad_dataset_mappings_name_the_field(project, tmp_path, capsys, command, dataset, field):
    path = scenario(project, dataset=dataset,
                    panel="  - {name: s, kind: simulated}\n")
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, str(path), f": {field}")


BAD_LINES = [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"id": "x", "prompt": "p", "candidates": []}', "candidates"),
    (('{"id": "x", "prompt": "p", "candidates": [{"id": "a", "text": "t"}], '
      '"gold": {"a": "maybe"}}'), "gold"),
    ('{"id": "r0", "prompt": "p", "candidates": [{"id": "a", "text": "t"}]}', "duplicate"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("line, needle", BAD_LINES)
def test_bad_dataset_lines_name_file_and_line(project, tmp_path, capsys, command, line, needle):
    with (project / "data.jsonl").open("a") as fh:
        fh.write(line + "\n")
    path = scenario(project)
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, "data.jsonl:7", needle)


BAD_CSVS = [
    ("request_id;candidate_id;judge;label\n", "missing column"),
    ("request_id,candidate_id,judge,label,confidence\nr0,a,gpt,accept,1.5\n", "outside [0, 1]"),
    ("request_id,candidate_id,judge,label,confidence\nr0,a,gpt,accept,nan\n", "outside [0, 1]"),
    ("request_id,candidate_id,judge,label,confidence\nr0,a,gpt,accept,-0.1\n", "outside [0, 1]"),
    ("request_id,candidate_id,judge,label,confidence\nr0,a,gpt,accept,high\n", "not a number"),
    ("request_id,candidate_id,judge,label\nr0,a\n", "line 2"),
    ("request_id,candidate_id,judge,label\nr0,a,claude,accept\n", "'gpt' has no recorded vote"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("content, needle", BAD_CSVS)
def test_bad_record_csvs(project, tmp_path, capsys, command, content, needle):
    (project / "votes.csv").write_text(content)
    path = scenario(project, panel="  - {name: gpt, kind: replay, source: votes.csv}\n")
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, "votes.csv", needle)


def test_a_spreadsheet_csv_with_bom_and_crlf_loads(project):
    rows = ["request_id,candidate_id,judge,label,confidence"] + [
        f"r{i},a,gpt,reject,0.7" for i in range(6)]
    (project / "votes.csv").write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode())
    sc = load_scenario(scenario(project, panel="  - {name: gpt, kind: replay, "
                                               "source: votes.csv}\n"))
    table = sc.payloads["gpt"]
    assert len(table.rows) == 6 and table.rows[("gpt", "r0", "a")].confidence == 0.7


BAD_CONSTITUTIONS = [
    ("principles: []\n", "principles"),
    ("principles:\n  - {id: x, text: t, severity: dire}\n", "principles.0.severity"),
    ("principles:\n  - {id: x, text: t, severity: low, checks: [{regex: '(unclosed'}]}\n",
     "principles.0.checks.0"),
    ("principles: [\n", "invalid YAML"),
    ("42\n", "constitution"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("content, needle", BAD_CONSTITUTIONS)
def test_broken_constitutions(project, tmp_path, capsys, command, content, needle):
    (project / "constitution.yaml").write_text(content)
    path = scenario(project)
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, "constitution.yaml", needle, "panel.0.constitution")


def test_a_constitution_validated_on_its_own(project, capsys):
    (project / "constitution.yaml").write_text(BAD_CONSTITUTIONS[1][0])
    code, err = cli(capsys, "validate", str(project / "constitution.yaml"))
    assert_clear_error(code, err, "constitution.yaml", "principles.0.severity")


@pytest.mark.parametrize("command", COMMANDS)
def test_weights_and_competences_must_name_panel_judges(project, tmp_path, capsys, command):
    path = scenario(project, extra="strategy: {name: weighted, weights: {gtp: 2}}\n")
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, "strategy.weights", "gtp")


def test_fit_on_is_checked_at_validation(project, capsys):
    (project / "labelled.yaml").write_text("name: l\ndataset: missing.jsonl\npanel:\n"
                                           "  - {name: s, kind: simulated}\n")
    path = scenario(project, extra="strategy: dawid_skene\nfit_on: labelled.yaml\n")
    code, err = cli(capsys, "validate", str(path))
    assert_clear_error(code, err, "fit_on", "missing.jsonl")


# --- command-line options --------------------------------------------------------------------

@pytest.mark.parametrize("command", ("run", "compare", "tune", "audit"))
def test_out_that_is_a_file(project, tmp_path, capsys, command):
    (tmp_path / "afile").write_text("x")
    code, err = cli(capsys, command, str(scenario(project)), "--out", str(tmp_path / "afile"))
    assert_clear_error(code, err, "afile", "is a file")


@pytest.mark.parametrize("command", ("run", "compare", "tune", "audit"))
def test_out_that_cannot_be_created(project, tmp_path, capsys, command):
    (tmp_path / "afile").write_text("x")
    code, err = cli(capsys, command, str(scenario(project)), "--out",
                    str(tmp_path / "afile" / "sub"))
    assert_clear_error(code, err, "sub", "cannot write")


def test_store_that_is_a_directory(project, tmp_path, capsys):
    code, err = cli(capsys, "run", str(scenario(project)), "--out", str(tmp_path / "o"),
                    "--store", str(tmp_path))
    assert_clear_error(code, err, "--store", "directory")


@pytest.mark.parametrize("command", ("run", "compare", "tune", "audit"))
def test_unknown_log_level(project, tmp_path, capsys, command):
    code, err = cli(capsys, command, str(scenario(project)), "--log-level", "loud")
    assert_clear_error(code, err, "loud", "debug, info, warning, error")


@pytest.mark.parametrize("limit", ["0", "-3", "x"])
def test_limit_must_be_positive(project, capsys, limit):
    code, err = cli(capsys, "run", str(scenario(project)), "--limit", limit)
    assert code == 2 and "--limit" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, needle", [
    (["compare", "--gold-fraction", "1.5"], "--gold-fraction"),
    (["compare", "--gold-fraction", "nan"], "--gold-fraction"),
    (["compare", "--splits", "0"], "--splits"),
    (["compare", "--strategies", "majority,nope"], "unknown strategy 'nope'"),
    (["tune", "--max-harm", "-0.1"], "--max-harm"),
    (["tune", "--max-harm", "0.1", "--max-false-block", "0.1"], "one target"),
])
def test_bad_options_of_compare_and_tune(project, tmp_path, capsys, argv, needle):
    command, *rest = argv
    code, err = cli(capsys, command, str(scenario(project)), *rest, "--out", str(tmp_path / "o"))
    assert_clear_error(code, err, needle)


def test_tune_needs_gold(project, tmp_path, capsys):
    (project / "data.jsonl").write_text(json.dumps(
        {"id": "r0", "prompt": "p", "candidates": [{"id": "a", "text": "t"}]}) + "\n")
    path = scenario(project, panel="  - {name: s, kind: simulated}\n")
    code, err = cli(capsys, "tune", str(path), "--out", str(tmp_path / "o"))
    assert_clear_error(code, err, "gold")


def test_scenario_names_cannot_escape_the_output_folder(project, capsys):
    for name in ("..", "a/b"):
        path = project / "s.yaml"
        path.write_text(f"name: '{name}'\ndataset: data.jsonl\npanel:\n"
                        "  - {name: s, kind: simulated}\n")
        code, err = cli(capsys, "validate", str(path))
        assert_clear_error(code, err, "name")


# --- validation is linear in the size of the files -------------------------------------------

def test_validation_reads_files_once_per_path(project, monkeypatch):
    """Many judges naming one record file or constitution load it once."""
    from judges import replay

    loads: list[Path] = []
    original = replay.RecordTable.load.__func__  # type: ignore[attr-defined]

    def counting(cls, path):
        loads.append(Path(path))
        return original(cls, path)

    monkeypatch.setattr(replay.RecordTable, "load", classmethod(counting))
    panel = "".join(f"  - {{name: j{i}, kind: replay, source: votes.csv, recorded_as: gpt}}\n"
                    for i in range(50))
    sc = load_scenario(scenario(project, panel=panel))
    assert len(sc.judges) == 50 and len(loads) == 1


def test_config_error_is_the_only_error_loading_raises(project):
    """A sweep of mutations of a valid scenario: each loads or raises ConfigError."""
    import yaml

    base = yaml.safe_load(scenario(project).read_text())
    values = [None, True, -1, 0, 1.5, math.inf, "", "x", [], {}, [1], {"a": 1}]
    for key in ("name", "dataset", "panel", "strategy", "policy", "seed", "concurrency",
                "fit_on", "description"):
        for value in values:
            doc = {**base, key: value}
            path = project / "mut.yaml"
            path.write_text(yaml.safe_dump(doc))
            try:
                load_scenario(path)
            except ConfigError:
                pass


@pytest.mark.parametrize("command", ("run", "compare", "tune", "audit"))
@pytest.mark.parametrize("address", ["nonsense", "CLOSED"])
def test_an_address_without_a_cluster_fails_at_once(project, tmp_path, capsys, command, address):
    """Ray would retry for minutes; nothing listening on a loopback port is an error at once."""
    import socket

    if address == "CLOSED":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"  # closed again when the block ends
    code, err = cli(capsys, command, str(scenario(project)), "--address", address,
                    "--out", str(tmp_path / "o"))
    assert_clear_error(code, err, "--address")


def test_a_veto_of_accept_is_refused(project, capsys):
    code, err = cli(capsys, "validate", str(scenario(project, extra="strategy: {name: veto, "
                                                                   "veto_label: accept}\n")))
    assert_clear_error(code, err, "strategy", "veto_label 'accept'")


@pytest.mark.parametrize("rule", ["first", "random"])
def test_tie_rules_that_deliver_are_warned_about(project, capsys, rule):
    with pytest.raises(SystemExit) as info:
        main(["validate", str(scenario(
            project, extra=f"strategy: {{name: majority, tie_rule: {rule}}}\n"))])
    assert info.value.code == 0
    assert "warning: strategy 'majority' breaks accept/reject ties" in capsys.readouterr().out


# --- found by a hostile review: more of the same classes --------------------------------------

MORE_UNSAFE = [
    ("strategy: {name: threshold, label: reject, k: 5}\n", "strategy.k"),
    ("strategy: {name: position_debiased, base: {name: threshold, label: reject, k: 99}}\n",
     "strategy.base.k"),
    ("strategy: {name: log_odds, competences: {rules: 0.0, gpt: 0.0, claude: 0.0}}\n",
     "strategy.competences"),
    ("strategy: {name: weighted, weights: {rules: 0, gpt: 0, claude: 0}}\n", "strategy.weights"),
    ("strategy: {name: calibrated, seed: -1}\n", "strategy.seed"),
    ("seed: -1\n", "seed"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("extra, field", MORE_UNSAFE)
def test_more_unsafe_configurations(project, tmp_path, capsys, command, extra, field):
    path = scenario(project, extra=extra)
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, str(path), f": {field}")


def test_judge_weights_all_zero_are_refused(project, capsys):
    panel = "".join(f"  - {{name: {n}, kind: replay, source: votes.csv, weight: 0}}\n"
                    for n in ("gpt", "claude"))
    code, err = cli(capsys, "validate", str(scenario(project, panel=panel,
                                                     extra="strategy: weighted\n")))
    assert_clear_error(code, err, "strategy.weights", "weight 0")


def _alias_bomb(levels: int = 8) -> str:
    lines = ["junk0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"junk{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("content, needle", [
    ("policy: {quorum: 2}\npolicy: {quorum: 1}\n", "duplicate key 'policy'"),
    ("seed: " + "9" * 5000 + "\n", "invalid YAML value"),
    (_alias_bomb(), "expands to more than"),
    ("strategy: " + "{name: position_debiased, base: " * 300 + "majority" + "}" * 300 + "\n",
     "nested too deeply"),
])
def test_yaml_that_cannot_be_trusted(project, tmp_path, capsys, command, content, needle):
    path = scenario(project, extra=content)
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, needle)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("target", FILE_KINDS)
def test_special_files_are_refused_not_read(project, tmp_path, capsys, command, target):
    """A FIFO would block for ever, /dev/zero would fill the memory."""
    path = scenario(project)
    (project / target).unlink()
    os.mkfifo(project / target)
    code, err = cli(capsys, *args_for(command, path, tmp_path / "out"))
    assert_clear_error(code, err, target, "not a regular file")


def test_dev_zero_as_a_dataset(project, capsys):
    code, err = cli(capsys, "validate", str(scenario(project, dataset="/dev/zero")))
    assert_clear_error(code, err, "/dev/zero", "not a regular file")


@pytest.mark.parametrize("line, needle", [
    ('{"id": "x", "prompt": "p", "candidates": [{"id": "a", "text": "t"}], "metadata": {"n": '
     + "9" * 5000 + "}}", "invalid JSON value"),
    ('{"id": "x", "prompt": "bad \\ud800 text", "candidates": [{"id": "a", "text": "t"}]}',
     "surrogate"),
])
def test_json_values_python_cannot_hold(project, capsys, line, needle):
    with (project / "data.jsonl").open("a") as fh:
        fh.write(line + "\n")
    code, err = cli(capsys, "validate", str(scenario(project)))
    assert_clear_error(code, err, "data.jsonl:7", needle)


def test_unicode_line_separators_inside_json_strings_are_text(project):
    with (project / "data.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "x", "prompt": "line\u2028sep\x85end",
                             "candidates": [{"id": "a", "text": "t"}]}, ensure_ascii=False)
                 + "\n")
    sc = load_scenario(scenario(project))
    assert sc.requests[-1].prompt == "line\u2028sep\x85end"


def test_a_run_never_overwrites_its_own_inputs(project, capsys, monkeypatch):
    monkeypatch.chdir(project)
    before = (project / "votes.csv").read_text()
    code, err = cli(capsys, "run", str(scenario(project)), "--out", ".")
    assert_clear_error(code, err, "votes.csv", "overwrite its own input")
    assert (project / "votes.csv").read_text() == before


@pytest.mark.parametrize("argv", [["run", "s.yaml", "--limit", "abc"], ["run", "a", "b"],
                                  ["validate"], ["run", "s.yaml", "--quorum", "0"],
                                  ["schema", "bogus"], ["nope"]])
def test_usage_errors_are_one_line(capsys, argv):
    code, err = cli(capsys, *argv)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "--help" in err


def test_a_replay_judge_without_a_usable_vote_is_refused(project, capsys):
    (project / "votes.csv").write_text("request_id,candidate_id,judge,label\nR0,a,gpt,accept\n")
    path = scenario(project, panel="  - {name: gpt, kind: replay, source: votes.csv}\n")
    code, err = cli(capsys, "validate", str(path))
    assert_clear_error(code, err, "panel.0", "no usable vote")
