"""`consensus export`: DPO preference pairs (loaded with the `datasets` JSON loader, as TRL's
DPO trainer loads a preference dataset) and decision, vote and run-metric tables, from a real
smoke run and from a store filled through the Store API."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from consensus.cli.app import main
from consensus.scenario import load_scenario
from consensus.store import Store
from consensus.types import (
    Ballot,
    Candidate,
    Decision,
    DraftRecord,
    Escalation,
    Outcome,
    Request,
    Vote,
)
from strategies.majority import Majority

ROOT = Path(__file__).resolve().parents[1]


def export(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(["export", *argv])
    return int(done.value.code or 0), capsys.readouterr().err


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def load_dpo(path: Path):
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(path), split="train")
    for col in ("prompt", "chosen", "rejected"):
        assert ds.features[col].dtype == "string"  # plain strings: TRL's standard format
    assert all(c != r for c, r in zip(ds["chosen"], ds["rejected"], strict=True))
    return ds


# ---------------------------------------------------------------------------- the smoke run
@pytest.fixture(scope="module")
def smoke(ray_session, tmp_path_factory):
    from consensus.runner import run_scenario

    out = tmp_path_factory.mktemp("smoke") / "out"
    result = run_scenario(load_scenario(ROOT / "scenarios" / "safety_smoke.yaml"), out,
                          store_path=out / "consensus.sqlite")
    return out, result


@pytest.mark.ray
def test_dpo_pairs_of_the_smoke_run(smoke, tmp_path, capsys):
    out, result = smoke
    path = tmp_path / "prefs.jsonl"
    code, err = export([str(out), "--format", "dpo", "--out", str(path)], capsys)
    assert code == 0, err
    # expected, from the outcomes: the accepted revisions over the candidates they replaced,
    # and in requests with several candidates each accepted one over each rejected one
    expected = {(o.request_id, d.id, d.parent) for o in result.outcomes for d in o.drafts
                if d.accepted and any(x.subject == d.parent and x.label == "reject"
                                      for x in o.decisions)}
    expected |= {(o.request_id, a.subject, b.subject) for o in result.outcomes
                 for a in o.decisions for b in o.decisions
                 if a.label == "accept" and b.label == "reject" and not a.tie and not b.tie}
    assert any("~" in c for _, c, _ in expected)  # the PII leak the offline revision redacts
    ds = load_dpo(path)
    assert len(ds) == len(expected)
    assert set(ds["source"]) == {"revision", "pairwise"}
    got = {(r, c.split("/", 1)[1], j.split("/", 1)[1])
           for r, c, j in zip(ds["request_id"], ds["chosen_id"], ds["rejected_id"], strict=True)}
    assert got == expected
    (row,) = [r for r in rows(path) if r["kind"] == "revision"]
    assert "[email redacted]" in row["chosen"] and "@" in row["rejected"]
    assert row["run_id"] == result.run_id and row["judges"] == ["rules"]
    assert row["agreement"] == 1.0 and row["created_at"].endswith("+00:00")
    assert f"wrote {len(expected)} preference pairs" in err


@pytest.mark.ray
def test_tables_of_the_smoke_run(smoke, tmp_path, capsys):
    out, result = smoke
    for what, n in (("decisions", sum(len(o.decisions) for o in result.outcomes)),
                    ("votes", sum(len(o.votes) for o in result.outcomes)), ("metrics", 1)):
        path = tmp_path / f"{what}.csv"
        code, err = export([str(out), "--format", "csv", "--what", what, "--out", str(path)],
                           capsys)
        assert code == 0, err
        with path.open(newline="", encoding="utf-8") as fh:
            table = list(csv.DictReader(fh))
        assert len(table) == n and {r["run_id"] for r in table} == {result.run_id}
    code, _ = export([str(out), "--format", "jsonl", "--what", "metrics", "--out",
                      str(tmp_path / "m.jsonl")], capsys)
    (m,) = rows(tmp_path / "m.jsonl")
    assert code == 0 and m["accuracy"] == pytest.approx(result.summary.accuracy)
    assert m["status"] == "complete" and m["n_requests"] == 52


# ---------------------------------------------------------------------------- a store
def _votes(rid: str, cid: str, labels: dict[str, str]) -> tuple[Vote, ...]:
    return tuple(Vote(judge=j, request_id=rid, candidate_id=cid, label=lab, confidence=0.8)
                 for j, lab in labels.items())


def _decide(req: Request, votes: tuple[Vote, ...], **update: Any) -> Outcome:
    strategy = Majority()
    decisions = tuple(strategy.aggregate(Ballot.for_subject(
        req, s, tuple(v for v in votes if v.candidate_id == s))) for s in req.subjects())
    accepted = [d.subject for d in decisions if d.label == "accept"]
    return Outcome(request_id=req.id, run_id="r1", action="accept" if accepted else "block",
                   accepted_candidate=accepted[0] if accepted else None, decisions=decisions,
                   votes=votes, reason="test").model_copy(update=update)


def _req(rid: str, prompt: str, *texts: str, task: str = "verdict") -> Request:
    return Request(id=rid, prompt=prompt, task=task,  # type: ignore[arg-type]
                   candidates=tuple(Candidate(id=chr(97 + i), text=t)
                                    for i, t in enumerate(texts)))


@pytest.fixture
def store_path(tmp_path) -> Path:
    """One run with every way a pair is made, and every way one is not."""
    path = tmp_path / "c.sqlite"
    s = Store(path)
    s.start_run("r1", scenario="t", strategy="majority", config={})
    three = {"j1": "accept", "j2": "accept", "j3": "reject"}  # 2/3 accept
    # 1. two candidates: a accepted (2/3), b rejected (unanimous)
    r = _req("multi", "P1", "good", "bad")
    s.record("r1", _decide(r, _votes("multi", "a", three)
                           + _votes("multi", "b", dict.fromkeys(three, "reject"))), r)
    # 2. pairwise: b wins 3-0
    r = _req("pw", "P2", "left", "right", task="pairwise")
    s.record("r1", _decide(r, _votes("pw", "*", dict.fromkeys(three, "b"))), r)
    # 3. a tie (1-1): broken to reject by rule, no preference; and a lone accept
    r = _req("tie", "P3", "t-accepted", "t-tied")
    s.record("r1", _decide(r, _votes("tie", "a", {"j1": "accept"})
                           + _votes("tie", "b", {"j1": "accept", "j2": "reject"})), r)
    # 4. a revision accepted over its rejected candidate, after a rejected first draft
    r = _req("rev", "P4", "leak: a@b.c")
    bad = _votes("rev", "a", dict.fromkeys(three, "reject"))
    d1 = _votes("rev/a~r1", "a~r1", dict.fromkeys(three, "reject"))
    d2 = _votes("rev/a~r2", "a~r2", dict.fromkeys(three, "accept"))
    maj = Majority()
    drafts = (
        DraftRecord(id="a~r1", kind="revision", round=1, parent="a", source="redaction",
                    text="leak: [x]", votes=d1, accepted=False, decision=maj.aggregate(
                        Ballot(request_id="rev/a~r1", subject="a~r1",
                               labels=("accept", "reject"), votes=d1))),
        DraftRecord(id="a~r2", kind="revision", round=2, parent="a~r1", source="redaction",
                    text="no leak", votes=d2, accepted=True, decision=maj.aggregate(
                        Ballot(request_id="rev/a~r2", subject="a~r2",
                               labels=("accept", "reject"), votes=d2))))
    s.record("r1", _decide(r, bad, action="revise", drafts=drafts, delivered_draft="a~r2"), r)
    # 5. the same prompt in two requests: one answer accepted, the other rejected
    for rid, text, label in (("sp1", "kind", "accept"), ("sp2", "rude", "reject")):
        r = _req(rid, "P5", text)
        s.record("r1", _decide(r, _votes(rid, "a", dict.fromkeys(three, label))), r)
    # 6. a split decision escalated and reviewed: the reviewer prefers b
    r = _req("esc", "P6", "esc-a", "esc-b")
    s.record("r1", _decide(r, _votes("esc", "a", three) + _votes("esc", "b", three),
                           action="escalate", escalation=Escalation(priority=2, reason="x")), r)
    s.claim("ann", run_id="r1", request_id="esc")
    s.submit_review("r1", "esc", "ann", "prefer", chosen="b")
    # 7. another run, with one pair
    s.start_run("r2", scenario="t", strategy="majority", config={})
    r = _req("other", "P7", "fine", "awful")
    o = _decide(r, _votes("other", "a", dict.fromkeys(three, "accept"))
                + _votes("other", "b", dict.fromkeys(three, "reject")))
    s.record("r2", o.model_copy(update={"run_id": "r2"}), r)
    s.close()
    return path


def _pairs(store_path: Path, tmp_path: Path, capsys, *extra: str) -> list[dict[str, Any]]:
    out = tmp_path / "p.jsonl"
    code, err = export(["--store", str(store_path), "--out", str(out), *extra], capsys)
    assert code == 0, err
    return rows(out)


def test_every_kind_of_pair_and_only_real_preferences(store_path, tmp_path, capsys):
    got = _pairs(store_path, tmp_path, capsys)
    triples = {(p["kind"], p["prompt"], p["chosen"], p["rejected"]) for p in got}
    assert triples == {
        ("candidates", "P1", "good", "bad"),
        ("pairwise", "P2", "right", "left"),
        ("revision", "P4", "no leak", "leak: [x]"),
        ("revision", "P4", "no leak", "leak: a@b.c"),
        ("same_prompt", "P5", "kind", "rude"),
        ("review", "P6", "esc-b", "esc-a"),
        ("candidates", "P7", "fine", "awful"),
    }  # none from the tie (P3), nor from the split panel's side of P6 (2/3 on both)
    assert len(got) == len(triples)
    by_kind = {p["kind"]: p for p in got}
    assert by_kind["candidates"]["agreement"] in (pytest.approx(2 / 3), 1.0)
    assert by_kind["pairwise"]["agreement"] == 1.0
    assert by_kind["pairwise"]["chosen_id"] == "pw/b" and by_kind["pairwise"]["judges"] == [
        "j1", "j2", "j3"]
    assert by_kind["review"]["judges"] == ["human:ann"] and by_kind["review"]["agreement"] is None
    assert by_kind["review"]["chosen_id"] == "esc/b" and by_kind["review"]["source"] == "review"
    ds = load_dpo(tmp_path / "p.jsonl")
    assert len(ds) == len(got) and "agreement" in ds.column_names


def test_filters(store_path, tmp_path, capsys):
    def kinds(*a: str) -> list[str]:
        return sorted(p["kind"] for p in _pairs(store_path, tmp_path, capsys, *a))

    assert kinds("--source", "review") == ["review"]
    assert kinds("--source", "revision") == ["revision", "revision"]
    assert kinds("--source", "pairwise") == ["candidates", "candidates", "pairwise",
                                             "same_prompt"]
    assert kinds("--run", "r2") == ["candidates"]
    assert "same_prompt" not in kinds("--within-requests")
    # P1's pair has 2/3 agreement: below 0.9 it goes; the review pair stays (no panel figure)
    high = _pairs(store_path, tmp_path, capsys, "--min-agreement", "0.9")
    assert ("P1" not in {p["prompt"] for p in high}) and "review" in {p["kind"] for p in high}
    assert kinds("--since", "2999-01-01") == []
    assert len(kinds("--until", "2999-01-01")) == 7
    assert kinds("--until", "2000-01-01T00:00:00+00:00") == []


def test_tables_from_a_store(store_path, tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    code, _ = export(["--store", str(store_path), "--format", "jsonl", "--what", "decisions",
                      "--out", str(out), "--min-agreement", "1"], capsys)
    got = rows(out)
    assert code == 0 and got and all(r["agreement"] == 1.0 for r in got)
    assert {(r["request_id"], r["subject"]) for r in got} >= {("multi", "b"), ("pw", "*")}
    assert ("multi", "a") not in {(r["request_id"], r["subject"]) for r in got}
    code, _ = export(["--store", str(store_path), "--format", "csv", "--what", "votes",
                      "--run", "r2", "--out", str(tmp_path / "v.csv")], capsys)
    with (tmp_path / "v.csv").open(newline="") as fh:
        votes = list(csv.DictReader(fh))
    assert code == 0 and len(votes) == 6 and {v["run_id"] for v in votes} == {"r2"}


@pytest.mark.parametrize("argv, message", [
    (["--format", "parquet"], "--format is one of dpo, csv, jsonl"),
    (["--what", "votes"], "--what names a table"),
    (["--format", "csv", "--source", "review"], "--source filters preference pairs"),
    (["--source", "gold"], "--source is one of revision, pairwise, review"),
    (["--since", "yesterday"], "not an ISO 8601 date"),
    (["--since", "2024-02-01", "--until", "2024-01-01"], "--until must be later"),
    (["--min-agreement", "1.5"], "--min-agreement is a share in [0, 1]"),
    (["--format", "csv", "--what", "metrics", "--min-agreement", "0.5"], "not run metrics"),
    (["--run", "nope"], "has no run 'nope'"),
    (["--out", "{tmp}"], "the output is a directory"),
])
def test_bad_arguments_exit_2(argv, message, store_path, tmp_path, capsys):
    args = [a.format(tmp=tmp_path) for a in argv]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "x.jsonl")]
    code, err = export(["--store", str(store_path), *args], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.jsonl").exists()


def test_no_target_no_out_and_missing_store_exit_2(tmp_path, capsys):
    code, err = export(["--out", str(tmp_path / "x.jsonl")], capsys)
    assert code == 2 and "name a run folder or a store" in err
    code, err = export(["--store", str(tmp_path / "c.sqlite")], capsys)
    assert code == 2 and "--out" in err
    code, err = export(["--store", str(tmp_path / "absent.sqlite"), "--out",
                        str(tmp_path / "x.jsonl")], capsys)
    assert code == 2 and "no such store file" in err and not (tmp_path / "absent.sqlite").exists()


def test_a_decision_without_agreement_figures_fails_min_agreement():
    from consensus.export import Filters, share

    d = Decision(request_id="q", subject="a", label="accept", strategy="x")
    assert share(d, "accept") is None and not Filters(min_agreement=0.1).agrees(None)
    assert Filters().agrees(None)
