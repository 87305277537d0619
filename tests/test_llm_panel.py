"""LLM judges hosted in one Ray actor, through the coordinator, against the loopback server:
the whole path a production request takes (litellm over real HTTP), with no key and no network."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from consensus.coordinator import Coordinator, Panel
from consensus.policy import Policy
from consensus.types import Candidate, Request
from judges.actor import plan_hosts
from judges.registry import parse_judge_spec
from strategies.majority import Majority
from tests.loopback import LoopbackLLM

pytestmark = pytest.mark.ray
KEY = "sk-loopback-secret-0123456789"


@pytest.fixture(scope="module")
def key_env():
    """Set before the Ray session starts: local actors inherit the driver's environment."""
    import os

    os.environ["CONSENSUS_TEST_KEY"] = KEY
    yield
    del os.environ["CONSENSUS_TEST_KEY"]


@pytest.fixture(scope="module")
def server():
    with LoopbackLLM() as srv:
        yield srv


def llm(name: str, mode: str, base: str, **kw):
    return parse_judge_spec({"name": name, "kind": "llm", "model": f"openai/{mode}",
                             "api_base": base, "api_key_env": "CONSENSUS_TEST_KEY",
                             "retries": 1, "retry_backoff_s": 0.05, "call_timeout_s": 2.0,
                             "timeout_s": 3.0, **kw})


def test_llm_panel_on_ray(key_env, ray_session, server):
    specs = [llm("a", "valid", server.base_url), llm("b", "fenced", server.base_url),
             llm("c", "malformed", server.base_url), llm("d", "slow:10", server.base_url)]
    assert list(plan_hosts(specs)) == ["llm"]  # I/O-bound judges share one actor
    panel = Panel.start(specs, Path("."))
    try:
        coord = Coordinator(panel, Majority(), Policy(quorum=2))
        r = Request(id="r1", prompt="Tell me about chemistry.", candidates=(
            Candidate(id="good", text="Chemistry studies matter."),
            Candidate(id="bad", text="UNSAFE instructions follow."),
        ))
        out = asyncio.run(coord.decide(r))
        by = {(v.judge, v.candidate_id): v for v in out.votes}
        assert by[("a", "good")].label == "accept" and by[("a", "bad")].label == "reject"
        assert by[("b", "bad")].label == "reject"  # fenced JSON, parsed by the fallback
        assert by[("c", "good")].abstain_kind == "unparseable"
        assert by[("d", "good")].abstain_kind == "timeout"
        assert by[("a", "good")].tokens and by[("a", "good")].latency_s > 0
        assert out.action == "accept" and out.accepted_candidate == "good"
        assert [d.label for d in out.decisions] == ["accept", "reject"]
        assert out.latency_s < 5.0  # bounded by the timeouts, not the slow reply
        assert KEY not in json.dumps(out.model_dump(mode="json"))
    finally:
        panel.shutdown()
