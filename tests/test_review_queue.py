"""The review queue: the policy's escalation reasons and spot checks, and ReviewQueue over a
real SQLite store (claims, details, submit, undo, release, learning), without Ray."""

from __future__ import annotations

import asyncio
import math
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from consensus.coordinator import Coordinator
from consensus.policy import SPOT_CHECK, Policy
from consensus.review import ReviewError, ReviewQueue
from consensus.store import open_store
from consensus.types import Candidate, Outcome, Request, Violation, Vote
from strategies.majority import Majority

RUN = "run-1"
POLICY = Policy(quorum=2, on_no_consensus="escalate", escalate_margin_below=0.5,
                escalate_split_severity="high")


class VotePanel:
    """A panel that answers with the votes given per (request id, subject)."""

    def __init__(self, table: dict[tuple[str, str], list[Vote]], size: int = 3):
        self.table = table
        self.size = size

    async def poll(self, request: Request) -> tuple[Vote, ...]:
        return tuple(v for s in request.subjects() for v in self.table[(request.id, s)])


def vote(rid: str, cid: str, judge: str, label: str | None, conf: float = 0.9,
         critique: str = "", severe: str | None = None) -> Vote:
    if label is None:
        return Vote.abstain(judge=judge, request_id=rid, candidate_id=cid, kind="timeout",
                            reason="no reply within 5s")
    viol = (Violation(principle="no-harm", severity=severe),) if severe else ()  # type: ignore[arg-type]
    return Vote(judge=judge, request_id=rid, candidate_id=cid, label=label, confidence=conf,
                critique=critique or f"{judge} says {label}", violations=viol)


def request(rid: str, *cids: str, task: str = "verdict") -> Request:
    return Request(id=rid, prompt=f"prompt of {rid}", task=task,  # type: ignore[arg-type]
                   candidates=tuple(Candidate(id=c, text=f"answer {c} to {rid}") for c in cids))


CASES: dict[str, tuple[Request, list[Vote]]] = {
    # the majority accepts, but one judge names a critical principle: a severe split (3)
    "q-critical": (request("q-critical", "a"), [
        vote("q-critical", "a", "j0", "accept", 0.8, "looks fine"),
        vote("q-critical", "a", "j1", "accept", 0.7),
        vote("q-critical", "a", "j2", "reject", 0.95, "explains how to hurt", "critical")]),
    # one valid vote of three, quorum 2: no consensus, escalated (2)
    "q-noquorum": (request("q-noquorum", "a"), [
        vote("q-noquorum", "a", "j0", "accept"), vote("q-noquorum", "a", "j1", None),
        vote("q-noquorum", "a", "j2", None)]),
    # two candidates, each 2-1: vote margin 1/3 < 0.5, escalated (1)
    "q-split": (request("q-split", "a", "b"), [
        vote("q-split", "a", "j0", "accept"), vote("q-split", "a", "j1", "accept"),
        vote("q-split", "a", "j2", "reject"), vote("q-split", "b", "j0", "reject"),
        vote("q-split", "b", "j1", "reject"), vote("q-split", "b", "j2", "accept")]),
    # pairwise, 2-1 for b: margin 1/3, escalated (1)
    "q-pair": (request("q-pair", "a", "b", task="pairwise"), [
        vote("q-pair", "*", "j0", "b"), vote("q-pair", "*", "j1", "b"),
        vote("q-pair", "*", "j2", "a")]),
    # unanimous: delivered, not escalated
    "q-ok": (request("q-ok", "a"), [vote("q-ok", "a", f"j{i}", "accept") for i in range(3)]),
}


def decided(policy: Policy = POLICY) -> list[tuple[Request, Outcome]]:
    table = {(r.id, s): [v for v in votes if v.candidate_id == s]
             for r, votes in CASES.values() for s in r.subjects()}
    coord = Coordinator(VotePanel(table), Majority(), policy, run_id=RUN)
    return [(r, asyncio.run(coord.decide(r))) for r, _ in CASES.values()]


def filled_store(path: Path):
    """A store with the five cases decided and recorded (four escalated)."""
    store = open_store(path)
    store.ensure_run(RUN, scenario="review-test", strategy="majority", config={})
    for req, out in decided():
        store.record(RUN, out, request=req)
    return store


@pytest.fixture
def queue(tmp_path):
    store = filled_store(tmp_path / "c.sqlite")
    yield ReviewQueue(store)
    store.close()


# ---------------------------------------------------------------------------- the policy


def test_each_escalation_reason_gives_a_priority_and_a_reason():
    out = {o.request_id: o for _, o in decided()}
    crit, noq, split, pair = (out[k] for k in ("q-critical", "q-noquorum", "q-split", "q-pair"))
    assert crit.action == "escalate" and crit.output is None and not crit.delivered
    assert crit.escalation.priority == 3 and crit.severity == "critical"
    assert "split panel on a over critical principle no-harm" in crit.escalation.reason
    assert noq.action == "escalate" and noq.escalation.priority == 2
    assert "quorum missed" in noq.escalation.reason
    assert split.action == "escalate" and split.escalation.priority == 1
    assert "vote margin 0.33 < 0.5" in split.escalation.reason
    assert pair.action == "escalate" and "the panel is split on *" in pair.escalation.reason
    assert out["q-ok"].action == "accept" and out["q-ok"].escalation is None


def test_without_the_new_settings_the_same_votes_are_delivered():
    out = {o.request_id: o for _, o in decided(Policy(quorum=2))}
    assert out["q-critical"].action == "accept" and out["q-split"].action == "accept"
    assert out["q-noquorum"].action == "block"  # fail closed, no queue asked for


def test_a_principle_block_over_a_split_panel_stands_and_is_queued():
    r = request("x", "a")
    blocker = Vote(judge="j0", request_id="x", candidate_id="a", label="reject",
                   violations=(Violation(principle="no-secrets", severity="critical",
                                         intervention="block"),))
    votes = [blocker, vote("x", "a", "j1", "reject"), vote("x", "a", "j2", "accept")]
    d = Coordinator(VotePanel({("x", "a"): votes}), Majority(), POLICY).decide_ballots(r, votes)
    choice = POLICY.choose(r, d, votes)
    assert choice.action == "block" and choice.principle == "no-secrets"
    assert choice.escalation is not None and choice.escalation.priority == 3
    assert choice.escalation.principles == ("no-secrets",)
    # the same votes without the split rule: a plain block, nothing queued
    plain = Policy(quorum=2).choose(r, d, votes)
    assert plain.action == "block" and plain.escalation is None


def test_spot_checks_sample_delivered_outputs_deterministically():
    r = request("q-ok", "a")
    votes = CASES["q-ok"][1]
    d = Coordinator(VotePanel({("q-ok", "a"): votes}), Majority(), Policy()).decide_ballots(
        r, votes)
    every = Policy(spot_check_rate=1.0).choose(r, d, votes)
    assert every.action == "accept" and every.candidate == "a"  # the action stays
    assert every.escalation is not None
    assert (every.escalation.priority, every.escalation.reason) == (0, SPOT_CHECK)
    assert Policy().choose(r, d, votes).escalation is None
    ids = [f"req-{i}" for i in range(4000)]
    tenth = Policy(spot_check_rate=0.1, spot_check_seed=7)
    picked = [i for i in ids if tenth.spot_checked(i)]
    assert abs(len(picked) / len(ids) - 0.1) < 0.02
    assert picked == [i for i in ids if Policy(spot_check_rate=0.1,
                                                spot_check_seed=7).spot_checked(i)]
    other = {i for i in ids if Policy(spot_check_rate=0.1, spot_check_seed=8).spot_checked(i)}
    assert other != set(picked)
    # a larger rate keeps the smaller rate's sample (the same hash, a higher bar)
    assert set(picked) <= {i for i in ids if Policy(spot_check_rate=0.3,
                                                    spot_check_seed=7).spot_checked(i)}


def test_a_withheld_output_is_never_spot_checked():
    out = {o.request_id: o for _, o in decided(Policy(quorum=2, spot_check_rate=1.0))}
    assert out["q-noquorum"].action == "block" and out["q-noquorum"].escalation is None


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan, math.inf, True, "often"])
def test_spot_check_rate_outside_zero_one_is_refused(rate):
    with pytest.raises(ValidationError, match="spot_check_rate"):
        Policy(spot_check_rate=rate)


# ---------------------------------------------------------------------------- the queue


def test_the_queue_lists_the_most_urgent_first(queue):
    rows = queue.list(RUN)
    assert [r["request_id"] for r in rows] == ["q-critical", "q-noquorum", "q-split", "q-pair"]
    assert [r["priority"] for r in rows] == [3, 2, 1, 1]
    assert rows[0]["principles"] == ["no-harm"] and rows[0]["status"] == "pending"
    assert queue.list("another-run") == []
    with pytest.raises(ReviewError, match="status is one of") as err:
        queue.list(status="done")  # type: ignore[arg-type]
    assert err.value.code == "invalid"


def test_details_hold_prompt_candidates_votes_and_agreement(queue):
    item = queue.claim("ana")
    assert item["request_id"] == "q-critical" and item["claimed_by"] == "ana"
    assert item["prompt"] == "prompt of q-critical"
    assert item["candidates"] == [{"id": "a", "text": "answer a to q-critical",
                                   "generator": None}]
    by_judge = {v["judge"]: v for v in item["votes"]}
    assert by_judge["j2"]["label"] == "reject" and by_judge["j2"]["confidence"] == 0.95
    assert by_judge["j2"]["critique"] == "explains how to hurt"
    assert by_judge["j2"]["violations"] == ["no-harm"]
    (d,) = item["decisions"]
    assert d["label"] == "accept" and d["agreement"]["n_valid"] == 3
    assert d["agreement"]["shares"] == pytest.approx({"accept": 2 / 3, "reject": 1 / 3})
    assert item["priority"] == 3 and "critical principle no-harm" in item["reason"]
    noq = queue.details(RUN, "q-noquorum")
    assert {v["abstained"] for v in noq["votes"]} == {None, "timeout"}
    assert "no reply within 5s" in {v["critique"] for v in noq["votes"]}


def test_two_reviewers_never_get_the_same_item(queue):
    first, second = queue.claim("ana"), queue.claim("ben")
    assert first["request_id"] == "q-critical" and second["request_id"] == "q-noquorum"
    with pytest.raises(ReviewError, match="claimed by ana") as err:
        queue.claim("ben", RUN, "q-critical")
    assert err.value.code == "claimed"
    assert queue.claim("ana", RUN, "q-critical")["claimed_by"] == "ana"  # hers again
    with pytest.raises(ReviewError) as unknown:
        queue.claim("ana", RUN, "q-ok")  # delivered, never escalated
    assert unknown.value.code == "unknown"


def test_concurrent_claims_from_many_connections_are_disjoint(tmp_path):
    path = tmp_path / "c.sqlite"
    filled_store(path).close()
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(6)

    def reviewer(name: str) -> None:
        store = open_store(path)  # a connection per reviewer, as separate terminals have
        q = ReviewQueue(store)
        barrier.wait()
        mine = []
        while (item := q.claim(name)) is not None:
            mine.append(item["request_id"])
            q.submit(RUN, item["request_id"], name, "reject")
        got[name] = mine
        store.close()

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [rid for ids in got.values() for rid in ids]
    assert sorted(claimed) == sorted(["q-critical", "q-noquorum", "q-split", "q-pair"])


def test_submit_accept_prefer_revise_and_their_preferences(queue):
    store = queue.store
    queue.claim("ana", RUN, "q-critical")
    rid = queue.submit(RUN, "q-critical", "ana", "accept", note="harmless in context")
    assert queue.list(RUN, status="reviewed")[0]["request_id"] == "q-critical"
    (rev,) = queue.reviews(RUN)
    assert (rev["review_id"], rev["verdict"], rev["note"]) == (rid, "accept",
                                                               "harmless in context")
    queue.claim("ana", RUN, "q-split")
    queue.submit(RUN, "q-split", "ana", "prefer", chosen="b")
    prefs = store.preferences(run_id=RUN)
    assert [(p["chosen"], p["rejected"]) for p in prefs] == [
        ("answer b to q-split", "answer a to q-split")]
    queue.claim("ana", RUN, "q-noquorum")
    queue.submit(RUN, "q-noquorum", "ana", "revise", revision="A safer answer.")
    last = store.preferences(run_id=RUN)[-1]
    assert (last["chosen"], last["rejected"], last["source"]) == (
        "A safer answer.", "answer a to q-noquorum", "review")
    assert [r["verdict"] for r in queue.reviews(RUN)] == ["accept", "prefer", "revise"]


@pytest.mark.parametrize(("verdict", "kw", "fragment"), [
    ("approve", {}, "verdict is one of"),
    ("prefer", {}, "prefer names the better candidate"),
    ("prefer", {"chosen": "zz"}, "no candidate 'zz'"),
    ("revise", {"revision": "  "}, "revise needs the edited text"),
    ("accept", {}, "none was delivered: name the one to accept"),
    ("reject", {"revision": "x"}, "a revision goes with verdict revise"),
    ("accept", {"chosen": "a", "note": "x" * 10_001}, "a note is a text of at most"),
])
def test_bad_reviews_are_refused_and_nothing_is_written(queue, verdict, kw, fragment):
    queue.claim("ana", RUN, "q-split")
    with pytest.raises(ReviewError, match=fragment) as err:
        queue.submit(RUN, "q-split", "ana", verdict, **kw)
    assert err.value.code == "invalid"
    assert queue.reviews() == [] and queue.item(RUN, "q-split")["status"] == "claimed"


def test_only_the_claimant_submits_and_prefer_needs_two_candidates(queue):
    with pytest.raises(ReviewError, match="not claimed") as err:
        queue.submit(RUN, "q-critical", "ana", "accept")
    assert err.value.code == "claimed"
    queue.claim("ana", RUN, "q-critical")
    with pytest.raises(ReviewError, match="claimed by ana"):
        queue.submit(RUN, "q-critical", "ben", "accept")
    with pytest.raises(ReviewError, match="prefer needs two or more candidates"):
        queue.submit(RUN, "q-critical", "ana", "prefer", chosen="a")
    with pytest.raises(ReviewError) as unknown:
        queue.submit(RUN, "nope", "ana", "accept")
    assert unknown.value.code == "unknown"


def test_undo_takes_back_the_reviewers_last_review_only(queue):
    store = queue.store
    queue.claim("ana", RUN, "q-split")
    queue.submit(RUN, "q-split", "ana", "prefer", chosen="b")
    queue.claim("ben", RUN, "q-pair")
    ben = queue.submit(RUN, "q-pair", "ben", "prefer", chosen="a")
    assert len(store.preferences(run_id=RUN)) == 2
    undone = queue.undo("ana")
    assert undone["request_id"] == "q-split" and undone["undone"] is True
    item = queue.item(RUN, "q-split")
    assert (item["status"], item["claimed_by"]) == ("claimed", "ana")
    assert [p["request_id"] for p in store.preferences(run_id=RUN)] == ["q-pair"]
    assert [r["review_id"] for r in queue.reviews(RUN)] == [ben]
    assert len(queue.reviews(RUN, include_undone=True)) == 2
    with pytest.raises(ReviewError, match="ana has no review to undo"):
        queue.undo("ana")
    # the item is hers again: she reviews it anew
    queue.submit(RUN, "q-split", "ana", "reject", chosen="a")
    assert queue.item(RUN, "q-split")["status"] == "reviewed"


def test_release_gives_the_item_back(queue):
    queue.claim("ana", RUN, "q-critical")
    with pytest.raises(ReviewError, match="claimed by ana"):
        queue.release(RUN, "q-critical", "ben")
    queue.release(RUN, "q-critical", "ana")
    assert queue.item(RUN, "q-critical")["status"] == "pending"
    assert queue.claim("ben")["request_id"] == "q-critical"


def test_reviews_teach_the_judges_and_undo_unteaches(queue):
    store = queue.store
    assert store.competences() == {}
    queue.claim("ana", RUN, "q-critical")
    queue.submit(RUN, "q-critical", "ana", "reject")  # gold: reject; j2 was right
    learned = store.competences()
    j0, j2 = learned["j0"]["reject"], learned["j2"]["reject"]
    assert j2[0] > j0[0] and j0[1] > j2[1]  # more alpha for the right judge, beta for others
    assert store.competence_history(judge="j2")
    queue.undo("ana")
    assert store.competences().get("j2", {}).get("reject") in (None, (2.0, 1.0))


def test_a_reviewer_needs_a_name(queue):
    with pytest.raises(ReviewError, match="a reviewer is a name") as err:
        queue.claim("  ")
    assert err.value.code == "invalid"
