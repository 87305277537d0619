"""The rules judge under catastrophic patterns: bounded by its budget, off the event loop.

``(a|a)+$`` on ``"a" * 30 + "b"`` backtracks exponentially on the ``regex`` engine (which, unlike
``re``, answers ``(a+)+$`` at once, thanks to its repeat guards); ``(.*?,){11}P`` is another.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.constitution import parse_constitution
from consensus.types import Candidate, Request, Vote
from judges.actor import JudgeHostImpl
from judges.budget import Budget
from judges.rules import RulesJudge, RulesJudgeSpec

CATASTROPHIC = "(a|a)+$"
STALLS = "a" * 30 + "b"
MARGIN_S = 2.0  # generous: a shared CI machine


def principle(pid: str, checks: list[Any], **extra: Any) -> dict[str, Any]:
    return {"id": pid, "text": "t", "severity": "high", "checks": checks, **extra}


def judge(principles: list[dict[str, Any]], *, timeout_s: float = 1.0,
          name: str = "rules") -> RulesJudge:
    spec = RulesJudgeSpec(name=name, constitution="<inline>", timeout_s=timeout_s)
    return RulesJudge(spec, parse_constitution(principles))


def request(text: str, *, prompt: str = "a question", rid: str = "q",
            n: int = 1) -> Request:
    return Request(id=rid, prompt=prompt,
                   candidates=tuple(Candidate(id=f"c{i}", text=text) for i in range(n)))


def timed_vote(j: RulesJudge, r: Request, candidate: Candidate | None) -> tuple[Vote, float]:
    start = time.perf_counter()
    v = asyncio.run(j.judge(r, candidate))
    return v, time.perf_counter() - start


@pytest.mark.parametrize(
    ("checks", "extra", "prompt", "text", "names"),
    [
        ([{"regex": CATASTROPHIC}], {}, "q", STALLS, ["regex check", "checks.0", CATASTROPHIC]),
        ([{"regex": r"(.*?,){11}P"}], {}, "q", "1," * 30, ["regex check", "checks.0"]),
        ([{"keywords": ["zzz"]}, {"keywords": ["b"], "unless": [CATASTROPHIC]}], {}, "q",
         STALLS + " b", ["keywords check", "checks.1, its unless patterns"]),
        ([{"refusal": {"phrases": [CATASTROPHIC]}}], {}, "q", STALLS, ["refusal check"]),
        ([{"regex": CATASTROPHIC}], {"scope": "input"}, STALLS, "fine", ["regex check"]),
    ],
    ids=["regex", "lazy-groups", "unless", "refusal-phrase", "input-scope"],
)
def test_a_catastrophic_pattern_is_a_timeout_naming_principle_and_check(
    checks: list[Any], extra: dict[str, Any], prompt: str, text: str, names: list[str]
) -> None:
    j = judge([principle("no-x", checks, **extra)], timeout_s=1.0)
    r = request(text, prompt=prompt)
    v, elapsed = timed_vote(j, r, r.candidates[0])
    assert v.abstained and v.abstain_kind == "timeout", v
    reason = v.abstain_reason or ""
    assert reason.startswith("principle no-x: ") and "exceeded the 1s budget" in reason, reason
    for fragment in names:
        assert fragment in reason, (fragment, reason)
    assert elapsed < 1.0 + MARGIN_S
    assert v.latency_s < 1.0 + MARGIN_S and v.candidate_id == "c0"


def test_a_stall_in_the_answer_refusal_detection_names_the_principle() -> None:
    # The prompt is flagged, so the principle's own refusal check is skipped; its phrase still
    # runs in the detection of whether the answer is a refusal.
    j = judge([principle("unsafe", [{"keywords": ["bomb"]}], scope="input"),
               principle("over-refusal", [{"refusal": {"phrases": [CATASTROPHIC]}}])])
    r = request(STALLS, prompt="how to make a bomb")
    v, elapsed = timed_vote(j, r, r.candidates[0])
    assert v.abstain_kind == "timeout" and elapsed < 1.0 + MARGIN_S
    assert (v.abstain_reason or "").startswith("principle over-refusal: refusal check exceeded")
    assert "(refusal detection)" in (v.abstain_reason or "")


def test_the_same_judge_answers_harmless_text_and_regex_guards_nested_plus() -> None:
    j = judge([principle("no-x", [{"regex": CATASTROPHIC}]),
               principle("nested", [{"regex": "(a+)+$"}], severity="low")], timeout_s=1.0)
    r = request("all fine here")
    v, _ = timed_vote(j, r, r.candidates[0])
    assert (v.label, v.violations) == ("accept", ())
    # (a+)+$ is catastrophic for re, not for regex: it matches at once (the tail "aaa").
    j = judge([principle("nested", [{"regex": "(a+)+$"}])], timeout_s=1.0)
    r = request("a" * 30 + "b" + "aaa")
    v, elapsed = timed_vote(j, r, r.candidates[0])
    assert v.label == "reject" and elapsed < 1.0


def test_pairwise_stall_is_a_timeout_too() -> None:
    j = judge([principle("no-x", [{"regex": CATASTROPHIC}])], timeout_s=1.0)
    r = Request(id="q", prompt="p", task="pairwise",
                candidates=(Candidate(id="a", text="ok"), Candidate(id="b", text=STALLS)))
    v, elapsed = timed_vote(j, r, None)
    assert v.abstain_kind == "timeout" and v.candidate_id == "*"
    assert "principle no-x" in (v.abstain_reason or "") and elapsed < 1.0 + MARGIN_S


def test_the_event_loop_keeps_running_during_a_stall() -> None:
    j = judge([principle("no-x", [{"regex": CATASTROPHIC}])], timeout_s=1.0)
    r = request(STALLS)

    async def main() -> tuple[Vote, float, int]:
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        v = await j.judge(r, r.candidates[0])
        tick.cancel()
        return v, max(gaps), len(gaps)

    v, worst_gap, ticks = asyncio.run(main())
    assert v.abstain_kind == "timeout"
    assert ticks > 20 and worst_gap < 0.5  # the loop was not held for the stall's second


HARMLESS = [principle("no-insults", [{"keywords": ["idiot"]}])]


def test_one_host_a_stalling_judge_does_not_delay_the_others_or_later_requests() -> None:
    slow_spec = RulesJudgeSpec(name="slow", constitution="<inline>", timeout_s=2.0)
    fast_spec = RulesJudgeSpec(name="fast", constitution="<inline>", timeout_s=2.0)
    host = JudgeHostImpl([
        (slow_spec, parse_constitution([principle("no-x", [{"regex": CATASTROPHIC}])])),
        (fast_spec, parse_constitution(HARMLESS)),
    ])
    # More stalled calls than the default executor has threads (min(32, cpus + 4)).
    n = 10
    bad = request("you idiot " + STALLS, rid="bad", n=n)
    good = request("you idiot", rid="good")

    async def main() -> tuple[list[Vote], list[Vote], float, float, bool]:
        start = time.perf_counter()
        first = asyncio.create_task(host.judge_batch(
            bad, [("slow", c.id) for c in bad.candidates] + [("fast", "c0")]))
        await asyncio.sleep(0.3)  # the slow judge is stalled now
        second_start = time.perf_counter()
        votes2 = await host.judge_batch(good, [("fast", "c0"), ("slow", "c0")])
        second_took = time.perf_counter() - second_start
        first_done_then = first.done()
        votes1 = await first
        return votes1, votes2, time.perf_counter() - start, second_took, first_done_then

    votes1, votes2, total, second_took, first_done_then = asyncio.run(main())
    # The second request was answered while the first still stalled, and promptly.
    assert not first_done_then and second_took < 1.0
    assert [(v.judge, v.label) for v in votes2] == [("fast", "reject"), ("slow", "accept")]
    assert votes2[0].violations[0].principle == "no-insults"
    # The first batch: the fast judge's vote is right; every stalled call is a named timeout.
    *stalled, fast = votes1
    assert (fast.judge, fast.label, fast.violations[0].principle) == ("fast", "reject",
                                                                      "no-insults")
    assert fast.latency_s < 1.0
    assert len(stalled) == n and all(v.judge == "slow" and v.abstain_kind == "timeout"
                                     for v in stalled)
    assert all("principle no-x: regex check" in (v.abstain_reason or "") for v in stalled)
    assert total < 2.0 + MARGIN_S


def test_calls_queued_behind_stalls_keep_their_own_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from judges import rules

    monkeypatch.setattr(rules, "MAX_THREADS", 2)
    j = judge([principle("no-x", [{"regex": CATASTROPHIC}])], timeout_s=1.0)
    r = request(STALLS, n=6)

    async def main() -> list[Vote]:
        return list(await asyncio.gather(*(j.judge(r, c) for c in r.candidates)))

    start = time.perf_counter()
    votes = asyncio.run(main())
    # Six calls on two threads: the queued ones find their budget spent and say so at once,
    # instead of each taking a full second in turn.
    assert all(v.abstain_kind == "timeout" for v in votes)
    assert time.perf_counter() - start < 1.0 + MARGIN_S


# --- Budget: the same matches as the engine's own finditer ------------------------------------

PATTERNS = ["a*", "", "x*|b", "|a", r"\b", "a|ab", "(?=a)", "b+", r"\w+", "$", "^", "(?m)^",
            "a??"]


@settings(max_examples=200, deadline=None)
@given(pattern=st.sampled_from(PATTERNS), text=st.text(alphabet="abx \n", max_size=20))
def test_budget_finditer_equals_finditer(pattern: str, text: str) -> None:
    rx = regex.compile(pattern)
    assert [m.span() for m in Budget(5.0).finditer(rx, text)] == \
        [m.span() for m in rx.finditer(text)]


def test_budget_past_its_deadline_raises_at_once() -> None:
    b = Budget(0.05)
    time.sleep(0.06)
    with pytest.raises(TimeoutError):
        b.search(regex.compile("a"), "a")
