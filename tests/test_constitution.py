"""Constitution loading: short forms, strict errors naming file / field / value, lint, schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consensus.constitution import (
    Constitution,
    KeywordsCheck,
    LengthCheck,
    PiiCheck,
    RefusalCheck,
    RegexCheck,
    constitution_json_schema,
    load_constitution,
    parse_constitution,
)
from consensus.errors import ConfigError
from consensus.lint import lint

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
""", "principles.0.checks.0.unless.0", ["invalid regular expression", "'p'", "'[a-'"]),
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


# --- files that are not UTF-8 text, or not files ----------------------------------------------

@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("latin1.yaml", GOOD.replace("Do not insult.", "Pas d'insulte, café.").encode("latin-1"),
         "not UTF-8 text (byte 0xe9"),
        ("utf16.yaml", GOOD.encode("utf-16"), "UTF-16"),
        ("utf16be.yaml", GOOD.encode("utf-16-be"), "UTF-16"),
    ],
)
def test_non_utf8_files_are_config_errors_naming_the_file(
    tmp_path: Path, name: str, data: bytes, fragment: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_constitution(path)
    assert info.value.source == str(path)
    assert name in str(info.value) and fragment in str(info.value), str(info.value)


def test_a_directory_is_a_config_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "rules.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="directory") as info:
        load_constitution(folder)
    assert info.value.source == str(folder)


# --- patterns are compiled at load, on the judge's engine -------------------------------------

@pytest.mark.parametrize(
    ("check", "field", "fragment"),
    [
        ({"regex": "x{2,1}"}, "principles.0.checks.0.pattern", "min repeat greater than max"),
        ({"regex": "a{99999999999}"}, "principles.0.checks.0.pattern", "repeat count too big"),
        ({"regex": "(" * 3000 + ")" * 3000}, "principles.0.checks.0.pattern", "recursion"),
        ({"regex": "a", "unless": ["fine", "[z-a]"]},
         "principles.0.checks.0.unless.1", "invalid regular expression"),
        ({"refusal": {"phrases": ["I can't", "\\"]}}, "principles.0.checks.0.phrases.1",
         "invalid regular expression"),
    ],
    ids=["bad-repeat", "overflow", "too-deep", "unless-item", "refusal-item"],
)
def test_patterns_the_engine_rejects_are_load_errors_naming_the_field(
    tmp_path: Path, check: dict, field: str, fragment: str
) -> None:
    import yaml

    path = write(tmp_path, yaml.safe_dump({"principles": [
        {"id": "p", "text": "t", "severity": "high", "checks": [check]}]}))
    with pytest.raises(ConfigError) as info:
        load_constitution(path)
    assert info.value.field == field, str(info.value)
    assert fragment in str(info.value) and "'p'" in str(info.value), str(info.value)


def test_patterns_only_the_judges_engine_knows_load() -> None:
    # \p{..} classes and inline flags mid-pattern: re rejects them, the regex engine does not.
    c = parse_constitution([{"id": "p", "text": "t", "severity": "low",
                             "checks": [{"regex": r"\p{Lu}{3}"}, {"regex": "a(?i)b"}]}])
    assert c.principles[0].checks == (RegexCheck(pattern=r"\p{Lu}{3}"), RegexCheck(pattern="a(?i)b"))


# --- lint at scale --------------------------------------------------------------------------

def _generated(n: int, planted: dict[int, tuple[int, dict[str, Any]]]) -> Constitution:
    """``n`` principles with distinct keywords, regexes and PII detectors; ``planted[j] =
    (i, changes)`` makes principle j repeat principle i's content with ``changes``."""
    detectors = ("email", "phone", "credit_card", "iban", "api_key")
    ps: list[dict] = []
    for i in range(n):
        p: dict = {"id": f"p{i}", "text": "t", "severity": "high",
                   "scope": "input" if i % 3 == 0 else "output"}
        if i % 4 == 3:
            p["checks"] = [{"regex": rf"\bcode{i}-\d+\b"}]
        elif i % 200 == 10:
            p["checks"] = [{"pii": [detectors[i // 200]]}]     # five, each its own detector
        else:
            p["checks"] = [{"keywords": [f"alpha{i} beta", f"gamma{i}"]}]
        ps.append(p)
    for j, (i, changes) in planted.items():
        ps[j] = {**ps[i], "id": f"p{j}", **changes}
    return parse_constitution(ps)


def test_lint_on_a_thousand_principles_finds_exactly_the_planted_conflicts() -> None:
    planted: dict[int, tuple[int, dict[str, Any]]] = {
        901: (1, {"intervention": "flag"}),                          # same keywords
        902: (2, {"checks": [{"keywords": ["g4mma2"]}], "severity": "low"}),  # leet, inside
        903: (7, {"checks": [{"keywords": ["code7-12"]}], "intervention": "flag"}),  # regex hit
        904: (11, {"intervention": "flag"}),                          # identical regex
        905: (10, {"severity": "low"}),                               # shared pii detector
        906: (5, {"scope": "input" if 5 % 3 else "output", "intervention": "flag"}),  # no: scope
        907: (13, {}),                                                # no: same everything
    }
    warnings = lint(_generated(1000, planted))
    pairs = sorted(w.split("'")[1] + "/" + w.split("'")[3] for w in warnings)
    assert pairs == ["p1/p901", "p10/p905", "p11/p904", "p2/p902", "p7/p903"], warnings
    assert any("keyword 'code7-12' (matched by regex" in w for w in warnings)
    assert any("pii detector 'email'" in w for w in warnings)


def test_lint_caps_its_warnings() -> None:
    import consensus.lint as lint_module

    n = 300  # every pair shares a detector; half the pairs differ in severity
    c = parse_constitution([{"id": f"p{i}", "text": "t", "severity": ("low", "high")[i % 2],
                             "checks": ["pii"]} for i in range(n)])
    warnings = lint(c)
    assert len(warnings) == lint_module.MAX_WARNINGS + 1
    assert warnings[-1] == f"... and {(n // 2) ** 2 - lint_module.MAX_WARNINGS} more warnings"


def test_lint_reports_regexes_too_slow_to_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import consensus.lint as lint_module

    monkeypatch.setattr(lint_module, "REGEX_BUDGET_S", 0.5)
    monkeypatch.setattr(lint_module, "TOTAL_REGEX_BUDGET_S", 0.6)
    slow = [{"id": f"slow{i}", "text": "t", "severity": "high",
             "checks": [{"regex": f"(a|a)+${'x' * i}"}]} for i in range(6)]
    c = parse_constitution([*slow, {"id": "kw", "text": "t", "severity": "low",
                                    "checks": [{"keywords": ["a" * 40 + "b"]}]}])
    start = time.perf_counter()
    warnings = lint(c)
    # Each slow regex is named; together they stop at the total budget, not after 6 x 0.5 s.
    assert [w.split("'")[3] for w in warnings] == [f"slow{i}" for i in range(6)], warnings
    assert all("too slow to compare" in w for w in warnings)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("pattern", [r"^idiot$", r"\Aidiot\Z", r"(?<!\w)idiot(?!\w)", "t$",
                                     r"^id", r"(?s)i.*t\Z"])
def test_lint_regex_against_keywords_behaves_as_on_each_phrase_alone(pattern: str) -> None:
    # The regex runs over all phrases joined into one text: anchors and lookarounds must still
    # behave as on the phrase alone, wherever the phrase sits among the others.
    filler = [{"id": f"f{i}", "text": "t", "severity": "high",
               "checks": [{"keywords": [f"word{i} more"]}]} for i in range(30)]
    c = parse_constitution([
        *filler[:15],
        {"id": "rx", "text": "t", "severity": "high", "checks": [{"regex": pattern}]},
        *filler[15:],
        {"id": "kw", "text": "t", "severity": "low", "checks": [{"keywords": ["idiot"]}]},
    ])
    warnings = lint(c)
    assert len(warnings) == 1 and "'rx'" in warnings[0] and "'kw'" in warnings[0], warnings
    assert "keyword 'idiot' (matched by regex" in warnings[0]
