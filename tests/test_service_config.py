"""The service's configuration and tokens, checked before anything starts (no Ray here)."""

from __future__ import annotations

import pytest

from consensus.cli.app import main
from consensus.errors import ConfigError
from consensus.service.auth import Tokens, is_loopback, require_tokens
from consensus.service.config import load_service
from consensus.service.schemas import ChatRequest, decision_of
from consensus.types import Decision, Outcome
from tests.conftest import ROOT
from tests.service_support import write_yaml

SMOKE = str(ROOT / "scenarios" / "safety_smoke.yaml")


def service_file(tmp_path, **doc):
    return write_yaml(tmp_path / "service.yaml", {"panels": {"smoke": SMOKE}, **doc})


def test_scenario_files_are_panels_named_after_them():
    cfg = load_service([SMOKE])
    assert list(cfg.panels) == ["safety_smoke"] and cfg.default_panel == "safety_smoke"
    assert cfg.panels["safety_smoke"].run_id == "service-safety_smoke"
    assert cfg.panels["safety_smoke"].scenario.requests == ()  # replicas do not get the data


@pytest.mark.parametrize(("doc", "field", "fragment"), [
    ({"default_panel": "nope"}, "default_panel", "unknown panel 'nope'"),
    ({"access": {"t": {"panels": ["nope"]}}}, "access.t.panels", "unknown panel 'nope'"),
    ({"access": {"t": {"policies": ["lax"]}}}, "access.t.policies", "unknown policy 'lax'"),
    ({"policies": {"default": {"quorum": 1}}}, "policies.default", "panel's own policy"),
    ({"policies": {"big": {"quorum": 99}}}, "policies.big.quorum", "larger than the panel"),
    ({"policies": {"zero": {"quorum": 0}}}, "policies.zero.quorum", ""),
    ({"replicas": {"min": 3, "max": 2}}, "replicas", "below replicas.min"),
    ({"limits": {"max_body_bytes": 10}}, "limits.max_body_bytes", ""),
    ({"colour": "red"}, "colour", ""),
])
def test_a_bad_service_file_names_the_file_and_field(tmp_path, doc, field, fragment):
    path = service_file(tmp_path, **doc)
    with pytest.raises(ConfigError) as err:
        load_service([path])
    assert err.value.source == str(path)
    assert (err.value.field or "").startswith(field), err.value
    assert fragment in err.value.message


def test_a_learning_strategy_without_fit_on_is_refused(tmp_path):
    path = service_file(tmp_path, panels={"smoke": {"scenario": SMOKE,
                                                    "strategy": "dawid_skene"}})
    with pytest.raises(ConfigError, match="fit_on") as err:
        load_service([path])
    assert err.value.field == "panels.smoke.strategy"


def test_cli_exits_2_on_a_bad_file_and_off_loopback_without_tokens(tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.delenv("CONSENSUS_API_TOKENS", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(service_file(tmp_path, default_panel="nope"))])
    assert exit_.value.code == 2
    assert "default_panel: unknown panel" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["serve", SMOKE, "--host", "0.0.0.0"])  # the refusal under test
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "needs bearer tokens" in err and "Traceback" not in err


def test_tokens_are_kept_as_digests_and_checked_whole():
    tokens = Tokens.parse("ci:0123456789abcdef-ci\n# a comment\nops:fedcba9876543210-ops, "
                          "bare-token-without-a-name")
    assert tokens.names() == ["ci", "ops", "token-3"]
    assert tokens.check("Bearer 0123456789abcdef-ci") == "ci"
    assert tokens.check("bearer bare-token-without-a-name") == "token-3"
    for header in (None, "", "Bearer", "Basic 0123456789abcdef-ci", "Bearer 0123456789abcdef",
                   "Bearer 0123456789abcdef-ci-and-more"):
        assert tokens.check(header) is None
    assert "0123456789abcdef-ci" not in repr(tokens)


@pytest.mark.parametrize(("text", "fragment"), [
    ("ci:short", "shorter than 16"), ("a:0123456789abcdef,a:fedcba9876543210", "two tokens"),
])
def test_bad_tokens_are_refused_without_showing_them(text, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        Tokens.parse(text)
    assert "short" not in str(err.value).replace("shorter", "")
    assert "0123456789abcdef" not in str(err.value)


def test_only_loopback_may_go_without_tokens():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("")
    require_tokens("127.0.0.1", Tokens())
    with pytest.raises(ConfigError, match="bearer tokens"):
        require_tokens("0.0.0.0", Tokens())
    require_tokens("0.0.0.0", Tokens.parse("a:0123456789abcdef"))


def test_the_prompt_of_a_chat_keeps_its_turns_and_forwards_parameters():
    req = ChatRequest.model_validate({
        "model": "m", "temperature": 0.2, "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})
    assert req.prompt() == "[system] Be brief.\nHi"
    assert req.forwarded() == {"temperature": 0.2} and req.include_usage()


@pytest.mark.parametrize(("action", "quorum_met", "screened", "word"), [
    ("accept", True, False, "pass"), ("flag", True, False, "flag"),
    ("block", True, False, "block"), ("block", False, False, "no_consensus"),
    ("escalate", False, False, "no_consensus"), ("block", True, True, "input_blocked"),
    ("revise", True, False, "revise"),
])
def test_block_outage_and_pass_are_distinct_words(action, quorum_met, screened, word):
    from consensus.types import Violation

    d = Decision(request_id="q", subject="a", label=None if not quorum_met else "accept",
                 strategy="majority", quorum_met=quorum_met)
    out = Outcome(request_id="q", action=action, decisions=(d,),
                  screening=(Violation(principle="p"),) if screened else ())
    assert decision_of(out) == word


def test_a_request_the_panel_does_not_decide_in_time_fails_closed():
    from types import SimpleNamespace

    from consensus.policy import Policy
    from consensus.service.runtime import timed_out
    from consensus.types import Candidate, Request

    coord = SimpleNamespace(panel=SimpleNamespace(size=5), strategy=SimpleNamespace(
        name="majority"), policy=Policy(), run_id="service-p", constitution_version="v1")
    req = Request(id="q", prompt="p", candidates=(Candidate(id="a", text="UNSAFE"),
                                                   Candidate(id="b", text="ok")))
    out = timed_out(coord, req, 30.0, 30.2)
    assert out.action == "block" and out.output == Policy().refusal_message
    assert decision_of(out) == "no_consensus" and "request_timeout_s (30s)" in out.reason
    assert [d.subject for d in out.decisions] == ["a", "b"]
    assert all(not d.quorum_met and d.label is None for d in out.decisions)


def test_metric_events_leave_in_one_call_per_flush_period(tmp_path):
    """A replica's metric events are batched: none is sent per request, all of them leave in one
    call when the period ends (or at once on flush, as /metrics does)."""
    import asyncio

    from consensus.service import runtime as rt

    calls: list[list] = []

    class Hub:
        class record:  # an actor method: hub.record.remote(events)
            @staticmethod
            def remote(events):
                calls.append(list(events))

    cfg = load_service([service_file(tmp_path)], store=str(tmp_path / "s.sqlite"))
    runtime = rt.Runtime(cfg, {}, hub=Hub())

    async def go():
        for i in range(5):
            runtime.emit([("requests", {"i": i})])
        assert calls == []
        await asyncio.sleep(rt.METRICS_FLUSH_S + 0.2)
        assert len(calls) == 1 and len(calls[0]) == 5
        runtime.emit([("requests", {"i": 5})])
        runtime.flush()
        assert len(calls) == 2 and calls[1] == [("requests", {"i": 5})]
        await asyncio.sleep(rt.METRICS_FLUSH_S + 0.1)
        assert len(calls) == 2  # the flush cancelled the timer: nothing sent twice

    try:
        asyncio.run(go())
    finally:
        runtime.close()
    runtime.emit([("requests", {"i": 6})])  # no event loop: sent at once
    assert calls[-1] == [("requests", {"i": 6})]


def _asgi_run(app_coro_factory, messages):
    """Drive ``until_disconnect`` with scripted client messages; return what was sent."""
    import asyncio

    sent: list[dict] = []

    async def go():
        queue: asyncio.Queue = asyncio.Queue()
        for m in messages:
            queue.put_nowait(m)

        async def send(message):
            sent.append(message)

        await app_coro_factory(queue.get, send)

    asyncio.run(go())
    return sent


def test_a_chunked_body_over_the_limit_is_refused_with_413():
    from consensus.service.app import until_disconnect

    reached = []

    async def inner(scope, receive, send):
        reached.append(scope)

    sent = _asgi_run(lambda receive, send: until_disconnect(
        inner, {"type": "http", "path": "/v1/consensus"}, receive, send, 10),
        [{"type": "http.request", "body": b"x" * 8, "more_body": True},
         {"type": "http.request", "body": b"x" * 8, "more_body": False}])
    assert reached == []
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert b"over the limit of 10 bytes" in sent[1]["body"]


def test_a_client_that_leaves_cancels_the_request_and_the_app_gets_its_body():
    import asyncio

    from consensus.service.app import until_disconnect

    seen: dict = {}

    async def inner(scope, receive, send):
        seen["body"] = (await receive())["body"]
        try:
            await asyncio.sleep(30)  # a judge call
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    async def client_leaves(receive, send):
        async def slow_receive():
            m = await receive()
            if m["type"] == "http.disconnect":
                await asyncio.sleep(0.1)  # the client goes away while the app works
            return m

        await asyncio.wait_for(until_disconnect(
            inner, {"type": "http", "path": "/v1/consensus"}, slow_receive, send, 1000), 5)

    _asgi_run(client_leaves, [{"type": "http.request", "body": b"{}", "more_body": False},
                              {"type": "http.disconnect"}])
    assert seen == {"body": b"{}", "cancelled": True}
