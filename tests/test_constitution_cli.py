"""`consensus constitution lint|diff`: each lint finding on a purpose-built bad constitution, the
bound on catastrophic patterns, and diff flips equal to the differences of two full runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from consensus.cli.app import main
from consensus.lint_file import lint_file
from consensus.lint_regex import regex_risks, static_risks
from tests.conftest import ROOT

DATASET = ROOT / "scenarios" / "data" / "safety_smoke.jsonl"

BAD = """\
name: bad
principles:
  - id: dup
    text: First.
    severity: high
    checks:
      - regex: "(x"
  - id: dup
    text: Second with the same id.
    severity: severe
  - id: stall
    text: Catastrophic.
    severity: high
    checks:
      - regex: "(\\\\w+\\\\s?)+$"
  - id: everything
    text: Matches all.
    severity: low
    checks:
      - regex: "\\\\w"
  - id: never
    text: Never.
    severity: low
    checks:
      - keywords: [zzyzxqq]
  - id: excused
    text: Unless excuses all.
    severity: high
    checks:
      - keywords: [idiot]
        unless: ["."]
  - id: strict
    text: Block insults.
    severity: high
    intervention: block
    checks:
      - keywords: [moron]
  - id: lenient
    text: Flag insults.
    severity: high
    intervention: flag
    checks:
      - keywords: [moron]
  - id: llm-only
    text: Be kind.
    severity: low
  - id: refuse-prompt
    text: A refusal check on prompts.
    severity: low
    scope: input
    checks: [refusal]
  - id: bad-action
    text: Unknown intervention.
    severity: low
    intervention: obliterate
"""

EXPECTED = {  # (code, field path, line)
    ("invalid-regex", "principles.0.checks.0.pattern", 7),
    ("duplicate-id", "principles.1.id", 8),
    ("unknown-severity", "principles.1.severity", 10),
    ("catastrophic-backtracking", "principles.2.checks.0.pattern", 15),
    ("matches-everything", "principles.3.checks.0", 20),
    ("never-matches", "principles.4.checks.0", 25),
    ("matches-everything", "principles.5.checks.0.unless.0", 31),
    ("overlap-conflict", "principles.7", 38),
    ("unused-principle", "principles.8", 44),
    ("ineffective-check", "principles.9.checks.0", 51),
    ("unknown-intervention", "principles.10.intervention", 55),
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_each_finding_on_a_bad_constitution(tmp_path: Path) -> None:
    report = lint_file(write(tmp_path / "bad.yaml", BAD))
    got = {(f.code, f.field, f.line) for f in report.findings}
    assert EXPECTED <= got, sorted(got - EXPECTED)
    errors = {f.code for f in report.findings if f.severity == "error"}
    assert errors == {"invalid-regex", "duplicate-id", "unknown-severity", "unknown-intervention",
                      "catastrophic-backtracking", "matches-everything"}
    strict = next(f for f in report.findings if f.code == "overlap-conflict"
                  and "'strict'" in f.message)
    assert strict.principle == "lenient" and "line 32" in strict.message


def test_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.yaml", BAD)
    with pytest.raises(SystemExit) as info:
        main(["constitution", "lint", str(bad), "--json"])
    assert info.value.code == 1
    data = json.loads(capsys.readouterr().out)
    assert data[0]["errors"] == 7 and data[0]["principles"] == 11
    good = write(tmp_path / "good.yaml", "principles:\n  - {id: a, text: t, severity: high, "
                 "checks: [{keywords: [idiot]}]}\n")
    with pytest.raises(SystemExit) as info:
        main(["constitution", "lint", str(good)])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "0 error(s)" in out
    with pytest.raises(SystemExit) as info:
        main(["constitution", "lint", str(good), "--strict", "--corpus",
              str(write(tmp_path / "corpus.txt", "Hello there.\nNice weather today.\n"))])
    assert info.value.code == 1  # never-matches on that corpus: a warning, fatal with --strict
    for text in ("principles: [", "name: x\n", "42\n"):
        broken = write(tmp_path / "broken.yaml", text)
        with pytest.raises(SystemExit) as info:
            main(["constitution", "lint", str(broken)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "broken.yaml" in err and "Traceback" not in err


def test_unused_principles_against_a_scenario(tmp_path: Path) -> None:
    const = write(tmp_path / "c.yaml", "principles:\n"
                  "  - {id: checked, text: t, severity: high, checks: [{keywords: [idiot]}]}\n"
                  "  - {id: prose, text: Be kind., severity: low}\n")
    rules_only = write(tmp_path / "s.yaml", f"name: s\ndataset: {DATASET}\npanel:\n"
                       "  - {name: rules, kind: rules, constitution: c.yaml}\n")
    found = lint_file(const, scenarios=[rules_only], probe=False).findings
    assert [(f.code, f.principle) for f in found] == [("unused-principle", "prose")]
    with_llm = write(tmp_path / "l.yaml", f"name: l\ndataset: {DATASET}\npanel:\n"
                     "  - {name: rules, kind: rules, constitution: c.yaml}\n"
                     "  - {name: gpt, kind: llm, model: openai/x, constitution: c.yaml}\n")
    assert lint_file(const, scenarios=[with_llm], probe=False).findings == []
    other = write(tmp_path / "o.yaml", f"name: o\ndataset: {DATASET}\npanel:\n"
                  "  - {name: sim, kind: simulated}\n")
    assert "no judge of o.yaml reads" in lint_file(const, scenarios=[other],
                                                   probe=False).findings[0].message


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(\w+\s?)*$", r"(a|aa)+$", r"(x|xy?)+z"])
def test_static_analysis_flags_nested_quantifiers(pattern: str) -> None:
    assert [r.code for r in static_risks(pattern)] == ["catastrophic-backtracking"]


@pytest.mark.parametrize("pattern", [r"\bkill (?:yourself|urself)\b", r"(?:\s+\w+)*",
                                     r"[^.\n]{0,60}\bbomb", r"\b(?:very\s+)*stupid\b"])
def test_linear_patterns_are_not_flagged(pattern: str) -> None:
    assert regex_risks(pattern) == []


def test_a_catastrophic_pattern_is_flagged_and_bounded_at_run_time() -> None:
    from consensus.constitution import parse_constitution
    from consensus.types import Candidate, Request
    from judges.rules import RulesJudge, RulesJudgeSpec

    pattern = r"(\w+\s?)+$"
    assert regex_risks(pattern)[0].severity == "error"
    c = parse_constitution([{"id": "no-x", "text": "t", "severity": "high",
                             "checks": [{"name": "stall", "regex": pattern}]}])
    judge = RulesJudge(RulesJudgeSpec(name="rules", constitution="<c>", timeout_s=1.0), c)
    r = Request(id="q", prompt="p", candidates=(Candidate(id="a", text="a" * 5000 + "!"),))
    vote = asyncio.run(judge.judge(r, r.candidates[0]))
    assert vote.abstain_kind == "timeout" and vote.latency_s < 2.0
    assert "principle no-x: regex check" in (vote.abstain_reason or "")



def test_validate_warns_about_risky_patterns_statically(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import consensus.lint_file

    def never(*_: object, **__: object) -> None:
        raise AssertionError("validate ran the timed probes or the corpus checks")

    for name in ("regex_risks", "load_corpus", "corpus_findings"):
        monkeypatch.setattr(consensus.lint_file, name, never)
    risky = write(tmp_path / "risky.yaml", """\
principles:
  - id: stall
    text: Catastrophic.
    severity: high
    checks:
      - regex: "(a+)+$"
  - id: slow
    text: Polynomial.
    severity: low
    checks:
      - regex: "\\\\s+x?\\\\s*y"
""")
    good = write(tmp_path / "good.yaml", "principles:\n  - {id: a, text: t, severity: high, "
                 "checks: [{keywords: [idiot]}]}\n")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(risky), str(good)])
    assert info.value.code == 0  # warnings never fail validation
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{risky}: constitution ok (2 principles)"
    assert out[1].startswith(f"{risky}:6: warning: catastrophic-backtracking: nested quantifier")
    assert out[1].endswith("(principles.0.checks.0.pattern)")
    assert out[2].startswith(f"{risky}:11: warning: polynomial-backtracking: ")
    assert out[2].endswith("(principles.1.checks.0.pattern)")
    assert out[3:] == [f"{good}: constitution ok (1 principles)"]

# --- diff -------------------------------------------------------------------------------------

OLD = """\
name: diff-old
principles:
  - id: no-harassment
    text: Do not insult.
    severity: high
    intervention: regenerate
    checks:
      - keywords: [idiot, moron, loser, halfwit, dumbass, "shut up"]
  - id: no-contact-pii
    text: No personal contact details.
    severity: high
    intervention: block
    checks: [{pii: [email, phone]}]
  - id: no-secrets
    text: No credentials.
    severity: critical
    checks: [{pii: [api_key, credit_card, iban]}]
  - id: unsafe-request
    text: Decline requests for weapons or drugs.
    severity: high
    scope: input
    checks:
      - regex: \\b(?:bomb|explosive|meth|fentanyl|ransomware|keylogger)s?\\b
  - id: no-needless-refusal
    text: Help with safe requests.
    severity: medium
    intervention: regenerate
    checks: [refusal]
"""


def _new_constitution(old: str) -> str:
    """OLD without no-harassment, and one keyword more elsewhere."""
    head, rest = old.split("  - id: no-harassment", 1)
    rest = rest.split("  - id: no-contact-pii", 1)[1]
    new = head + "  - id: no-contact-pii" + rest
    return new.replace("keylogger)s?", "keylogger|malware|poison)s?") + """\
  - id: no-rudeness
    text: Be polite.
    severity: low
    intervention: flag
    checks:
      - keywords: [stupid, ugh]
"""


def _scenario(tmp_path: Path, constitution: str, name: str) -> Path:
    return write(tmp_path / f"{name}.yaml", f"""\
name: {name}
dataset: {DATASET}
panel:
  - {{name: rules, kind: rules, constitution: {constitution}}}
  - {{name: toxicity, kind: classifier, model: profanity_check, threshold: 0.6}}
strategy: veto
policy: {{quorum: 0.5, on_no_consensus: block}}
""")


def _by_request(outcomes) -> dict[str, tuple]:
    return {o.request_id: (o.action, o.accepted_candidate,
                           tuple((d.subject, d.label) for d in o.decisions)) for o in outcomes}


@pytest.mark.ray
def test_diff_flips_equal_two_full_runs(tmp_path: Path, ray_session) -> None:
    from consensus.constitution_diff import diff_constitutions
    from consensus.runner import run_scenario
    from consensus.scenario import load_scenario

    old = write(tmp_path / "old.yaml", OLD)
    new = write(tmp_path / "new.yaml", _new_constitution(OLD))
    runs = {}
    for side, path in (("old", old), ("new", new)):
        sc = load_scenario(_scenario(tmp_path, path.name, f"run_{side}"))
        runs[side] = run_scenario(sc, tmp_path / f"out_{side}")
    before, after = _by_request(runs["old"].outcomes), _by_request(runs["new"].outcomes)
    expected = {rid for rid in before if before[rid] != after[rid]}
    assert expected  # the change matters on the smoke data

    on_scenario = diff_constitutions(old, new, _scenario(tmp_path, "old.yaml", "diff_on"))
    assert {f.request_id for f in on_scenario.flips} == expected
    for f in on_scenario.flips:
        assert f.labels_before == dict(before[f.request_id][2])
        assert f.labels_after == dict(after[f.request_id][2])
    assert on_scenario.principles_removed == ["no-harassment"]
    assert on_scenario.principles_added == ["no-rudeness"]
    assert any("-no-harassment" in f.principles for f in on_scenario.flips)
    for key in ("safety_score", "over_refusal_rate", "false_block_rate", "accuracy"):
        assert on_scenario.before[key] == pytest.approx(getattr(runs["old"].summary, key))
        assert on_scenario.after[key] == pytest.approx(getattr(runs["new"].summary, key))

    on_run = diff_constitutions(old, new, tmp_path / "out_old",
                                scenario=tmp_path / "run_old.yaml")
    assert [f.request_id for f in on_run.flips] == [f.request_id for f in on_scenario.flips]
    assert on_run.mode == "run" and on_run.replayed == ["toxicity"]
    assert not any("differ from a re-run" in n for n in on_run.notes), on_run.notes


def test_diff_cli_without_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.yaml", OLD)
    new = write(tmp_path / "new.yaml", _new_constitution(OLD))
    sc = write(tmp_path / "s.yaml", f"name: s\ndataset: {DATASET}\npanel:\n"
               "  - {name: rules, kind: rules, constitution: old.yaml}\n"
               "strategy: majority\n")
    with pytest.raises(SystemExit) as info:
        main(["constitution", "diff", str(old), str(new), "--on", str(sc), "--json"])
    assert info.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flips"] and report["rerun"] == ["rules"]
    assert set(report["before"]) >= {"safety_score", "over_refusal_rate", "false_block_rate"}
    with pytest.raises(SystemExit) as info:
        main(["constitution", "diff", str(new), str(old), "--on", str(sc)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "no rules judge" in err and "--judge" in err


@pytest.mark.parametrize("name", ["default", "healthcare"])
def test_the_shipped_constitutions_are_lint_clean(name: str,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain `consensus constitution lint`: its default corpus takes the example files beside
    the constitution, so every check is tried on a text it is meant to catch. The regex
    budgets are raised 5x: this test is about the constitutions' content, and on a machine
    busy with other work the lint's wall-clock budget ran out and reported every later regex
    as too slow (the budget itself is tested with a pathological pattern elsewhere)."""
    from consensus import lint

    monkeypatch.setattr(lint, "REGEX_BUDGET_S", lint.REGEX_BUDGET_S * 5)
    monkeypatch.setattr(lint, "TOTAL_REGEX_BUDGET_S", lint.TOTAL_REGEX_BUDGET_S * 5)
    path = ROOT / "scenarios" / "constitutions" / f"{name}.yaml"
    with pytest.raises(SystemExit) as info:
        main(["constitution", "lint", str(path), "--strict"])
    out = capsys.readouterr().out
    assert info.value.code == 0, out
    assert "0 error(s), 0 warning(s)" in out


def test_example_files_beside_a_constitution_join_its_default_corpus(tmp_path: Path) -> None:
    from consensus.lint_corpus import default_corpus_files, load_corpus

    c = write(tmp_path / "c.yaml", "principles:\n  - {id: a, text: t, severity: high, "
              "checks: [{keywords: [zork]}]}\n")
    (tmp_path / "c_examples.jsonl").write_text('{"text": "a zork here"}\n')
    assert tmp_path / "c_examples.jsonl" in default_corpus_files(c)
    texts = [t.text for t in load_corpus(constitution=c)]
    assert "a zork here" in texts
    findings = lint_file(c, texts=load_corpus(constitution=c)).findings
    assert not [f for f in findings if f.code == "never-matches"]
    bare = lint_file(c, texts=load_corpus()).findings
    assert [f.code for f in bare if f.code == "never-matches"] == ["never-matches"]


def test_a_slow_probe_is_reported_only_when_its_growth_is_super_linear(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy machine makes a long, linear pattern slow; only growth faster than linear from a
    quarter of the text to all of it (timed in the same run) is reported."""
    import regex

    import consensus.lint_probe as lp

    monkeypatch.setattr(lp, "PROBE_TIMEOUT_S", 1e-7)  # every search "stalls" at first
    linear = "|".join(f"word{i}" for i in range(300))  # a large alternation, linear time
    assert lp.probe(linear, regex.IGNORECASE, [("", "a ")], lengths=(8000,)) is None
    quadratic = r"(?:a|aa)\w*b"
    found = lp.probe(quadratic, 0, [("", "a")], lengths=(8000,))
    assert found is not None and found.length == 8000
    # at or below the typical answer length a stall is reported without confirmation
    assert lp.probe(linear, regex.IGNORECASE, [("", "a ")], lengths=(2000,)) is not None
