"""Policy and coordinator logic without Ray: quorum, fail closed, interventions, logging."""

from __future__ import annotations

import asyncio
import json

import pytest
import structlog

from consensus.coordinator import Coordinator
from consensus.log import configure_logging
from consensus.policy import Policy
from consensus.types import Candidate, Request, Violation, Vote
from strategies.majority import Majority
from strategies.veto import Veto


class FakePanel:
    """Anything with ``size`` and ``async poll(request)`` can stand in for the Ray panel."""

    def __init__(self, table: dict[tuple[str, str], list[Vote | str | None]]):
        self.table = table
        self.size = len(next(iter(table.values())))

    async def poll(self, request: Request) -> tuple[Vote, ...]:
        out = []
        for subject in request.subjects():
            for i, v in enumerate(self.table[(request.id, subject)]):
                if isinstance(v, Vote):
                    out.append(v)
                elif v is None:
                    out.append(Vote.abstain(judge=f"j{i}", request_id=request.id,
                                            candidate_id=subject, kind="timeout", reason="slow"))
                else:
                    out.append(Vote(judge=f"j{i}", request_id=request.id, candidate_id=subject,
                                    label=v, confidence=0.9))
        return tuple(out)


def req(rid: str = "r", n: int = 1, **kw) -> Request:
    return Request(id=rid, prompt="p", candidates=tuple(
        Candidate(id=c, text=f"text {c}") for c in "abc"[:n]), **kw)


def decide(table, strategy=None, policy=None, request=None):
    coord = Coordinator(FakePanel(table), strategy or Majority(), policy or Policy())
    return asyncio.run(coord.decide(request or req()))


def test_best_accepted_candidate_is_delivered():
    out = decide({("r", "a"): ["accept", "reject", "reject"],
                  ("r", "b"): ["accept", "accept", "reject"],
                  ("r", "c"): ["accept", "accept", "accept"]}, request=req(n=3))
    assert out.action == "accept" and out.accepted_candidate == "c" and out.output == "text c"


def test_quorum_missed_fails_closed_with_reason():
    out = decide({("r", "a"): ["accept", None, None]}, policy=Policy(quorum=2))
    assert out.action == "block" and out.output == Policy().refusal_message
    assert "quorum missed: 1 valid vote(s) of 3, 2 required" in out.reason


def test_all_abstain_is_no_consensus_even_with_quorum_one():
    out = decide({("r", "a"): [None, None]}, policy=Policy(quorum=1))
    assert out.action == "block" and not out.decisions[0].quorum_met


def test_no_consensus_action_is_configurable():
    out = decide({("r", "a"): ["accept", None, None]},
                 policy=Policy(quorum=2, on_no_consensus="escalate"))
    assert out.action == "escalate" and out.output is None and not out.delivered


def test_flag_below_confidence():
    out = decide({("r", "a"): ["accept", "accept", "reject"]}, policy=Policy(flag_below=0.9))
    assert out.action == "flag" and out.delivered and "0.67 < 0.9" in out.reason


def principled(intervention: str, judge: str = "j0") -> Vote:
    return Vote(judge=judge, request_id="r", candidate_id="a", label="reject",
                violations=(Violation(principle=f"p-{intervention}",
                                      intervention=intervention),))  # type: ignore[arg-type]


def test_principles_choose_the_intervention_most_severe_wins():
    out = decide({("r", "a"): [principled("flag"), principled("escalate", "j1")]}, Veto())
    assert out.action == "escalate" and "p-escalate" in out.reason
    flagged = decide({("r", "a"): [principled("flag")]}, Veto())
    # flag delivers, and a candidate the panel rejected is never delivered
    assert flagged.action == "block" and not flagged.delivered
    assert "asks for flag, but a rejected candidate is not delivered" in flagged.reason
    revise = decide({("r", "a"): [principled("revise")]}, Veto())
    # nothing to revise it with (no generator, no located span): the fallback, block
    assert revise.action == "block" and revise.chosen_action == "revise"
    assert revise.output == Policy().refusal_for("p-revise")
    assert "no generator configured" in revise.reason and not revise.drafts
    plain = decide({("r", "a"): [principled("flag")]}, Veto(),
                   Policy(use_principle_interventions=False))
    assert plain.action == "block"


def test_a_flag_principle_flags_an_accepted_candidate():
    minor = Vote(judge="j0", request_id="r", candidate_id="a", label="accept",
                 violations=(Violation(principle="p-tone", intervention="flag"),))
    out = decide({("r", "a"): [minor]}, Veto())
    assert out.action == "flag" and out.delivered and "p-tone" in out.reason


def test_pairwise_winner_is_delivered():
    r = Request(id="r", prompt="p", task="pairwise", candidates=(
        Candidate(id="x", text="X"), Candidate(id="y", text="Y")))
    out = decide({("r", "*"): ["y", "y", "x"]}, request=r)
    assert out.action == "accept" and out.accepted_candidate == "y" and out.output == "Y"
    tie = decide({("r", "*"): ["y", "x"]}, request=r)
    assert tie.action == "block" and "no consensus" in tie.reason


@pytest.mark.parametrize("quorum, n, need", [(1, 5, 1), (3, 5, 3), (0.5, 5, 3), (0.5, 4, 2),
                                             (1.0, 3, 3), (0.01, 3, 1)])
def test_min_valid(quorum, n, need):
    assert Policy(quorum=quorum).min_valid(n) == need


def test_every_log_line_carries_run_and_request_ids_and_no_secret(capsys):
    configure_logging("debug", json=True)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(run_id="run-42")
    try:
        coord = Coordinator(FakePanel({(f"r{i}", "a"): ["accept"] for i in range(3)}), Majority())
        asyncio.run(coord.run([req(f"r{i}") for i in range(3)]))
        structlog.get_logger("t").info("key_test", api_key="sk-live-abcdefghijklmnop",
                                       note="Bearer abc.def.ghi")
    finally:
        structlog.contextvars.clear_contextvars()
        # the logger factory holds the captured stream, which pytest closes after this test
        structlog.reset_defaults()
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.strip()]
    decided = [x for x in lines if x["event"] == "decided"]
    assert {x["request_id"] for x in decided} == {"r0", "r1", "r2"}
    assert all(x["run_id"] == "run-42" for x in lines)
    blob = json.dumps(lines)
    assert "sk-live" not in blob and "abc.def.ghi" not in blob
