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


def test_a_run_whose_judge_mostly_abstains_says_so_and_can_fail(ray_session, server, tmp_path,
                                                                capsys):
    """The summary counts parse paths and abstention kinds per judge, warns about a judge that
    abstained on most calls, and --fail-on-abstain-rate turns that into exit code 3."""
    from consensus.cli.app import main

    (tmp_path / "data.jsonl").write_text("".join(json.dumps(
        {"id": f"r{i}", "prompt": "p", "candidates": [{"id": "a", "text": "fine"}],
         "gold": {"a": "accept"}}) + "\n" for i in range(6)))
    base = server.base_url
    (tmp_path / "s.yaml").write_text(
        "name: loud\ndataset: data.jsonl\npanel:\n"
        f"  - {{name: good, kind: llm, model: openai/valid, api_base: '{base}'}}\n"
        f"  - {{name: mute, kind: llm, model: openai/malformed, api_base: '{base}'}}\n"
        "policy: {quorum: 1}\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "s.yaml"), "--out", str(out),
              "--fail-on-abstain-rate", "0.5"])
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert "warning: judge mute abstained on 6 of 6 calls (100%): 6 unparseable" in err
    assert "abstention rate above 0.5: mute 100%" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parse_paths"] == {"strict": 6, "unparseable": 6}
    assert summary["per_judge"]["mute"]["abstentions"] == {"unparseable": 6}
    assert summary["per_judge"]["good"]["parse_paths"] == {"strict": 6}
    assert summary["warnings"] == ["judge mute abstained on 6 of 6 calls (100%): 6 unparseable"]
    assert "parse" in (out / "votes.csv").read_text().splitlines()[0]
    # Without the option the same run exits 0, and still warns.
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "s.yaml"), "--out", str(out)])
    assert info.value.code == 0 and "warning: judge mute" in capsys.readouterr().err
