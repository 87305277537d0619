"""Hostile inputs: record CSVs that must fail loudly, replay judges without usable votes,
non-ASCII keyword phrases."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from consensus.constitution import KeywordsCheck, load_constitution, parse_constitution
from consensus.errors import ConfigError
from consensus.lint import lint
from consensus.types import Candidate, Request
from judges.replay import RecordTable, ReplayJudge, ReplayJudgeSpec, usable_votes
from judges.rules import RulesJudge
from judges.rules_match import keyword_regex

HEADER = "request_id,candidate_id,judge,label,confidence,reason\n"


def csv_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "votes.csv"
    p.write_text(text, encoding="utf-8")
    return p


def load_error(tmp_path: Path, text: str) -> ConfigError:
    p = csv_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        RecordTable.load(p)
    assert info.value.source == str(p)
    assert str(p) in str(info.value)
    return info.value


# --- 1. record CSV ------------------------------------------------------------------------------

def test_duplicate_header_column_is_named(tmp_path: Path) -> None:
    err = load_error(tmp_path, "request_id,candidate_id,judge,label,confidence,label\n"
                               "r0,a,gpt,accept,0.9,reject\n")
    assert "line 1" in err.message and "duplicated column" in err.message
    assert "'label'" in err.message and err.field == "label"


def test_unterminated_quote_reports_the_line_where_it_opened(tmp_path: Path) -> None:
    text = (HEADER + "r0,a,gpt,accept,0.9,ok\n"
            + 'r1,a,gpt,accept,0.8,"looks fine\n'
            + "r2,a,gpt,reject,0.7,bad\n" + "r3,a,gpt,reject,0.7,worse\n")
    err = load_error(tmp_path, text)
    assert err.message.startswith("line 3:")
    assert "quote" in err.message and "not closed" in err.message


def test_unterminated_quote_closed_by_a_later_quote_is_still_an_error(tmp_path: Path) -> None:
    text = (HEADER + 'r0,a,gpt,accept,0.9,"looks fine\n'
            + 'r1,a,gpt,reject,0.7,"bad"\n' + "r2,a,gpt,reject,0.7,worse\n")
    err = load_error(tmp_path, text)
    assert err.message.startswith("line 2:") and "quote" in err.message


def test_quote_swallowing_rows_into_an_id_column_is_an_error(tmp_path: Path) -> None:
    # The quote closes (so the csv module is happy) but the label spans three lines.
    text = ("request_id,candidate_id,judge,label\n" + 'r0,a,gpt,"accept\n'
            + "r1,a,gpt,reject\n" + 'r2,a,gpt,reject"\n')
    err = load_error(tmp_path, text)
    assert err.message.startswith("line 2:") and "spans lines 2-4" in err.message
    assert err.field == "label"


def test_a_quoted_multiline_reason_is_fine(tmp_path: Path) -> None:
    p = csv_file(tmp_path, HEADER + 'r0,a,gpt,accept,0.9,"first line\nsecond, line"\n'
                 + "r1,a,gpt,reject,,x\n")
    table = RecordTable.load(p)
    assert table.rows[("gpt", "r0", "a")].reason == "first line\nsecond, line"
    assert table.rows[("gpt", "r1", "a")].label == "reject"


def test_more_fields_than_the_header(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEADER + "r0,a,gpt,accept,0.9,fine\n"
                               + "r1,a,gpt,accept,0.9,fine, really\n")
    assert "line 3: 7 fields, the header has 6" in err.message


def test_fewer_fields_than_the_header_still_fails(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEADER + "r0,a,gpt,accept\n")
    assert "line 2: 4 fields, the header has 6" in err.message


def test_repeated_record_names_both_lines(tmp_path: Path) -> None:
    rows = ["r0,a,gpt,accept,,", "r0,b,gpt,accept,,", "r1,a,gpt,accept,,", "r0,a,claude,reject,,",
            "r2,a,gpt,,,unparsed", "r0,a,gpt,reject,,"]   # line 7 repeats line 2, other label
    err = load_error(tmp_path, HEADER + "\n".join(rows) + "\n")
    assert "line 7 repeats the record of line 2" in err.message
    assert "'gpt'" in err.message and "'r0'" in err.message


def test_repeated_record_with_the_same_label_fails_too(tmp_path: Path) -> None:
    err = load_error(tmp_path, "request_id,candidate_id,judge,label\n"
                               "q,a,gpt,accept\n\nq,a,gpt,accept\n")
    assert "line 4 repeats the record of line 2" in err.message


def test_line_numbers_count_multiline_rows(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEADER + 'r0,a,gpt,accept,,"two\nlines"\n' + "r1,a,gpt,accept,2,x\n")
    assert err.message.startswith("line 4:") and err.field == "confidence"


# --- 2. usable votes and verdict label case ---------------------------------------------------

def verdict(rid: str = "q", *cids: str) -> Request:
    return Request(id=rid, prompt="p",
                   candidates=tuple(Candidate(id=c, text="t") for c in (cids or ("a", "b"))))


def pairwise(rid: str = "pw") -> Request:
    return Request(id=rid, prompt="p", task="pairwise",
                   candidates=(Candidate(id="a", text="t"), Candidate(id="B", text="u")))


def test_usable_votes_counts_only_votes_the_dataset_can_use(tmp_path: Path) -> None:
    rows = ["q,a,gpt,accept", "q,b,gpt,ACCEPT", "q,c,gpt,accept",        # c: no such candidate
            "zz,a,gpt,accept",                                            # no such request
            "q2,a,gpt,", "q2,b,gpt,maybe",                                # empty / foreign label
            "pw,*,gpt,B", "pw2,*,gpt,b", "pw2,a,gpt,a",                   # case-sensitive; subject
            "q,a,claude,reject"]
    table = RecordTable.load(csv_file(tmp_path, "request_id,candidate_id,judge,label\n"
                                      + "\n".join(rows) + "\n"))
    requests = [verdict("q"), verdict("q2"), pairwise("pw"), pairwise("pw2")]
    assert usable_votes(table, "gpt", requests) == 3
    assert usable_votes(table, "claude", requests) == 1
    assert usable_votes(table, "nobody", requests) == 0
    assert usable_votes(table, "gpt", [verdict("other")]) == 0
    assert usable_votes(table, "gpt", []) == 0


def test_usable_votes_zero_when_the_file_is_for_another_dataset(tmp_path: Path) -> None:
    table = RecordTable.load(csv_file(tmp_path, "request_id,candidate_id,judge,label\n"
                                      "x1,a,gpt,accept\nx2,a,gpt,reject\n"))
    assert usable_votes(table, "gpt", [verdict("q"), verdict("r")]) == 0


@pytest.mark.parametrize(("recorded", "expected"),
                         [("ACCEPT", "accept"), ('" Reject "', "reject"), ("Accept", "accept"),
                          ("reject", "reject")])
def test_verdict_labels_ignore_case_and_whitespace(tmp_path: Path, recorded: str,
                                                   expected: str) -> None:
    table = RecordTable.load(csv_file(tmp_path, "request_id,candidate_id,judge,label\n"
                                      f"q,a,gpt,{recorded}\n"))
    r = verdict("q", "a")
    v = asyncio.run(ReplayJudge(ReplayJudgeSpec(name="gpt", source="v.csv"), table)
                    .judge(r, r.candidates[0]))
    assert v.label == expected and v.abstain_kind is None
    assert usable_votes(table, "gpt", [r]) == 1


def test_pairwise_labels_stay_case_sensitive(tmp_path: Path) -> None:
    table = RecordTable.load(csv_file(tmp_path, "request_id,candidate_id,judge,label\n"
                                      "pw,*,gpt,b\npw2,*,gpt,B\npw3,*,gpt,ACCEPT\n"))
    judge = ReplayJudge(ReplayJudgeSpec(name="gpt", source="v.csv"), table)
    wrong = asyncio.run(judge.judge(pairwise("pw"), None))
    assert wrong.label is None and wrong.abstain_kind == "unparseable"
    assert "'b'" in (wrong.abstain_reason or "")
    assert asyncio.run(judge.judge(pairwise("pw2"), None)).label == "B"
    assert asyncio.run(judge.judge(pairwise("pw3"), None)).label is None
    assert usable_votes(table, "gpt", [pairwise("pw"), pairwise("pw2"), pairwise("pw3")]) == 1


# --- 3. Unicode keywords ------------------------------------------------------------------------

def found(phrase: str, text: str) -> list[str]:
    return [m.group() for m in keyword_regex(phrase).finditer(text)]


@pytest.mark.parametrize(
    ("phrase", "text", "matches"),
    [
        ("crétin", "Quel crétin !", ["crétin"]),
        ("crétin", "QUEL CRÉTIN", ["CRÉTIN"]),
        ("crétin", "crétinisme", []),
        ("crétin", "cr tin", []),
        ("crétin", "cr_tin cr-tin cr.tin", []),
        ("crétin", "cretin", []),                   # an accent is a letter of its own
        ("crétin", "c.r.é.t.i.n", ["c.r.é.t.i.n"]),
        ("crétin", "crétins", ["crétins"]),
        ("idiot", "l'idiot", ["idiot"]),
        ("idiot", "éidiot idiotà", []),             # accented letters are word characters
        ("idiot", "idiot_x x_idiot", ["idiot", "idiot"]),   # underscore separates, as before
        ("ß", "Das ß hier", ["ß"]),
        ("straße", "STRASSE Straße", ["Straße"]),
        ("дурак", "Ты ДУРАК!", ["ДУРАК"]),
        ("дурак", "дураки", []),
        ("白痴", "白痴", ["白痴"]),
        ("白痴", "你是白痴吗", ["白痴"]),                # no spaces between Chinese words
        ("idiot crétin", "idiot, crétin", ["idiot, crétin"]),
    ],
)
def test_unicode_keywords(phrase: str, text: str, matches: list[str]) -> None:
    assert found(phrase, text) == matches


@pytest.mark.parametrize("phrase", ["ß", "白痴", "crétin", "дурак", "٣"])
def test_non_ascii_phrases_are_valid(phrase: str) -> None:
    assert KeywordsCheck(phrases=(phrase,)).phrases == (phrase,)


@pytest.mark.parametrize("phrase", ["!!!", "_", "—", "'’", " "])
def test_phrases_without_any_letter_or_digit_still_fail(phrase: str) -> None:
    with pytest.raises(ConfigError, match="no letter or digit"):
        parse_constitution([{"id": "p", "text": "t", "severity": "high",
                             "checks": [{"keywords": [phrase]}]}])


def test_cjk_keyword_constitution_loads_and_matches_its_text(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("principles:\n  - id: no-insults\n    text: 不要骂人。\n    severity: high\n"
                 "    checks:\n      - keywords: ['白痴', 'ß', 'crétin']\n", encoding="utf-8")
    judge = RulesJudge.from_constitution(load_constitution(p))
    for text, phrase in [("白痴", "白痴"), ("ß", "ß"), ("Quel crétin !", "crétin")]:
        r = Request(id="q", prompt="p", candidates=(Candidate(id="a", text=text),))
        v = asyncio.run(judge.judge(r, r.candidates[0]))
        assert v.label == "reject"
        assert [x.detail for x in v.violations] == [f"keywords:{phrase}"]
    r = Request(id="q", prompt="p", candidates=(Candidate(id="a", text="crétinisme"),))
    assert asyncio.run(judge.judge(r, r.candidates[0])).label == "accept"


def test_unicode_keyword_matching_stays_linear() -> None:
    rx = [keyword_regex(p) for p in ("crétin", "ßß", "白痴", "дурак дурак", "ééé")]
    texts = ["é" * 20000 + "x", "c.r." + "é." * 10000 + "x", "ß" * 20000 + "x",
             "白" * 20000, "дурак " * 4000 + "x", "ééé" * 7000]
    start = time.perf_counter()
    for r in rx:
        for t in texts:
            list(r.finditer(t, timeout=5.0))
    assert time.perf_counter() - start < 5.0


def test_lint_folds_non_ascii_phrases_as_matching_does() -> None:
    def two(a: str, b: str) -> list[str]:
        return lint(parse_constitution([
            {"id": "strict", "text": "t", "severity": "high", "intervention": "block",
             "checks": [{"keywords": [a]}]},
            {"id": "lenient", "text": "t", "severity": "high", "intervention": "flag",
             "checks": [{"keywords": [b]}]}]))
    assert two("crétin", "tin") == []        # 'tin' is not a word of 'crétin'
    assert len(two("crétin", "CRÉTIN")) == 1


def test_unterminated_quote_closed_at_a_later_line_end_is_caught(tmp_path: Path) -> None:
    # Valid CSV (the reason spans two lines), but its second line is a record of the same judge.
    text = HEADER + 'r0,a,gpt,accept,0.9,"looks fine\n' + 'r1,a,gpt,reject,0.7,bad"\n'
    err = load_error(tmp_path, text)
    assert err.message.startswith("line 2:") and "looks like a record" in err.message
    assert "r1,a,gpt,reject" in err.message
