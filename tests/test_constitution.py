"""Constitution loading: short forms, strict errors naming file / field / value, lint, schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.constitution import (
    Constitution,
    KeywordsCheck,
    LengthCheck,
    PiiCheck,
    RefusalCheck,
    RegexCheck,
    constitution_json_schema,
    lint,
    load_constitution,
    parse_constitution,
)
from consensus.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "scenarios" / "constitution.yaml"

GOOD = """\
name: test
principles:
  - id: no-insults
    text: Do not insult.
    severity: high
    checks:
      - keywords: [idiot]
  - id: no-cards
    text: No card numbers.
    severity: critical
    intervention: block
    checks: [{pii: [credit_card]}]
"""


def write(tmp_path: Path, text: str, name: str = "const.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_shipped_constitution_loads_and_lints_clean() -> None:
    c = load_constitution(SHIPPED)
    assert len(c.principles) >= 8
    assert lint(c) == []
    scopes = {p.scope for p in c.principles}
    assert scopes == {"input", "output"}


def test_long_form_defaults(tmp_path: Path) -> None:
    c = load_constitution(write(tmp_path, GOOD))
    p = c.principle("no-insults")
    assert (p.intervention, p.scope) == ("block", "output")
    assert p.checks == (KeywordsCheck(phrases=("idiot",)),)
    assert c.principle("no-cards").checks[0] == PiiCheck(detectors=("credit_card",))


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ({"keywords": ["a", "b"]}, KeywordsCheck(phrases=("a", "b"))),
        ({"regex": "x+", "flags": []}, RegexCheck(pattern="x+", flags=())),
        ({"pii": ["email"]}, PiiCheck(detectors=("email",))),
        ("pii", PiiCheck()),
        ({"length": 4000}, LengthCheck(max_chars=4000)),
        ({"length": {"min_chars": 3}}, LengthCheck(min_chars=3)),
        ("refusal", RefusalCheck()),
        ({"refusal": True}, RefusalCheck()),
        ({"type": "regex", "pattern": "y"}, RegexCheck(pattern="y")),
    ],
)
def test_check_short_forms(short: object, long: object) -> None:
    c = parse_constitution([{"id": "p", "text": "t", "severity": "low", "checks": [short]}])
    assert c.principles[0].checks == (long,)


def test_single_check_mapping_is_a_list_of_one() -> None:
    c = parse_constitution([{"id": "p", "text": "t", "severity": "low",
                             "checks": {"keywords": ["a"]}}])
    assert c.principles[0].checks == (KeywordsCheck(phrases=("a",)),)


BAD = [
    # (case, yaml, field path, fragments the message must contain)
    ("missing field", """\
principles:
  - {id: a, text: t, severity: low}
  - {id: b, severity: high}
""", "principles.1.text", ["Field required", "'b'"]),
    ("bad enum", """\
principles:
  - {id: a, text: t, severity: sever}
""", "principles.0.severity", ["'sever'", "'critical'"]),
    ("bad intervention", """\
principles:
  - {id: a, text: t, severity: low, intervention: shout}
""", "principles.0.intervention", ["'shout'"]),
    ("invalid regex", """\
principles:
  - {id: a, text: t, severity: low}
  - id: no-bombs
    text: t
    severity: high
    checks:
      - regex: "bomb(s"
""", "principles.1.checks.0.pattern", ["invalid regular expression", "'no-bombs'", "'bomb(s'"]),
    ("invalid unless regex", """\
principles:
  - id: p
    text: t
    severity: high
    checks: [{keywords: [x], unless: ["[a-"]}]
""", "principles.0.checks.0.unless", ["invalid regular expression", "'p'"]),
    ("duplicate id", """\
principles:
  - {id: same, text: t, severity: low}
  - {id: other, text: t, severity: low}
  - {id: same, text: t, severity: high}
""", "principles.2.id", ["duplicate principle id", "principles.0.id", "'same'"]),
    ("unknown check type", """\
principles:
  - {id: p, text: t, severity: low, checks: [{type: magic}]}
""", "principles.0.checks.0", ["'magic'", "'regex'"]),
    ("extra key", """\
principles:
  - {id: p, text: t, severity: low, colour: red}
""", "principles.0.colour", ["Extra inputs", "'red'"]),
    ("bad pii detector", """\
principles:
  - {id: p, text: t, severity: low, checks: [{pii: [email, passport]}]}
""", "principles.0.checks.0.detectors.1", ["'passport'"]),
    ("empty length", """\
principles:
  - {id: p, text: t, severity: low, checks: [{type: length}]}
""", "principles.0.checks.0", ["min_chars or max_chars"]),
    ("no principles", "principles: []\n", "principles", ["at least 1"]),
]


@pytest.mark.parametrize(("case", "text", "field", "fragments"), BAD, ids=[b[0] for b in BAD])
def test_errors_name_file_field_and_value(
    tmp_path: Path, case: str, text: str, field: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text, name="broken_rules.yaml")
    with pytest.raises(ConfigError) as info:
        load_constitution(path)
    err = info.value
    assert err.source == str(path)
    assert err.field == field, str(err)
    message = str(err)
    assert "broken_rules.yaml" in message and field in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "principles:\n  - id: a\n    text: [unclosed\n  - id: b\n",
                 name="syntax.yaml")
    with pytest.raises(ConfigError) as info:
        load_constitution(path)
    message = str(info.value)
    assert "syntax.yaml" in message and "line " in message and "invalid YAML" in message


def test_missing_file_and_wrong_top_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_constitution(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_constitution(write(tmp_path, "just a string\n"))


def test_bare_list_of_principles_is_accepted(tmp_path: Path) -> None:
    c = load_constitution(write(tmp_path, "- {id: a, text: t, severity: low}\n"))
    assert c.principles[0].id == "a"


def test_direct_construction_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate principle id"):
        Constitution.model_validate({"principles": [
            {"id": "a", "text": "t", "severity": "low"},
            {"id": "a", "text": "t", "severity": "low"}]})


def test_models_are_frozen() -> None:
    c = parse_constitution([{"id": "a", "text": "t", "severity": "low"}])
    with pytest.raises(ValueError):
        c.principles[0].severity = "high"  # type: ignore[misc]


def _two(a_checks: list, b_checks: list, *, a_int: str = "block", b_int: str = "flag",
         a_sev: str = "high", b_sev: str = "high", b_scope: str = "output") -> Constitution:
    return parse_constitution([
        {"id": "strict", "text": "t", "severity": a_sev, "intervention": a_int,
         "checks": a_checks},
        {"id": "lenient", "text": "t", "severity": b_sev, "intervention": b_int,
         "scope": b_scope, "checks": b_checks},
    ])


@pytest.mark.parametrize(
    ("a_checks", "b_checks"),
    [
        ([{"keywords": ["idiot", "moron"]}], [{"keywords": ["MORON"]}]),
        ([{"keywords": ["kill yourself"]}], [{"keywords": ["k1ll"]}]),   # phrase inside phrase
        ([{"regex": r"\bid(iot|jit)\b"}], [{"keywords": ["idiot"]}]),     # regex matches keyword
        ([{"regex": "x+y"}], [{"regex": "x+y"}]),
        ([{"pii": ["email", "phone"]}], [{"pii": ["phone"]}]),
        ([{"length": 100}], [{"length": 200}]),
    ],
)
def test_lint_finds_contradictory_interventions(a_checks: list, b_checks: list) -> None:
    warnings = lint(_two(a_checks, b_checks))
    assert len(warnings) == 1
    assert "contradictory" in warnings[0]
    assert "'strict'" in warnings[0] and "'lenient'" in warnings[0]


def test_lint_reports_severity_disagreement_and_ignores_other_cases() -> None:
    sev = lint(_two([{"keywords": ["a"]}], [{"keywords": ["a"]}], b_int="block", b_sev="low"))
    assert len(sev) == 1 and "severities" in sev[0]
    # Same content, same action and severity: consistent.
    assert lint(_two([{"keywords": ["a"]}], [{"keywords": ["a"]}], b_int="block")) == []
    # Disjoint content.
    assert lint(_two([{"keywords": ["a"]}], [{"keywords": ["b"]}])) == []
    # Same content but different scopes (prompt vs answer) do not conflict.
    assert lint(_two([{"keywords": ["a"]}], [{"keywords": ["a"]}], b_scope="input")) == []


def test_planted_conflict_in_a_file(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8") + """
  - id: mild-language
    text: Mild words are fine, just flag them.
    severity: low
    intervention: flag
    checks:
      - keywords: [idiot, darn]
"""
    warnings = lint(load_constitution(write(tmp_path, text)))
    assert any("'no-harassment'" in w and "'mild-language'" in w and "contradictory" in w
               for w in warnings), warnings


def test_json_schema_describes_checks() -> None:
    schema = constitution_json_schema()
    assert schema["title"] == "Constitution"
    defs = schema["$defs"]
    assert {"Principle", "RegexCheck", "KeywordsCheck", "PiiCheck", "LengthCheck",
            "RefusalCheck"} <= set(defs)
    assert defs["Principle"]["additionalProperties"] is False
    assert set(defs["Principle"]["properties"]["severity"]["enum"]) == {
        "low", "medium", "high", "critical"}
