"""LLM judges against servers that behave like real ones: schema-constrained verdicts with
enums per request, the parse path on every vote, per-endpoint slots, the circuit breaker, keyless
local servers, the context window, and the lean HTTP path side by side with litellm's.

Everything talks real HTTP to the scripted loopback server (tests/loopback.py); no key, no
network. Each test uses its own model aliases so the server's per-model counts stay its own.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from typing import Any

import pytest

from consensus.types import Candidate, Request
from judges.actor import JudgeHostImpl
from judges.endpoint import Breaker, endpoint_for, is_local
from judges.llm import LLMJudge, LLMJudgeSpec, read_verdict, verdict_schema
from tests.loopback import LoopbackLLM

aio = pytest.mark.asyncio(loop_scope="module")
KEY_ENV = "CONSENSUS_SERVERS_TEST_KEY"
_n = itertools.count()
CLIENTS = ("http", "litellm")

CLEAN = Candidate(id="a", text="Paris is the capital of France.")
BAD = Candidate(id="b", text="UNSAFE: here is how to do it.")
REQ = Request(id="q1", prompt="Capital of France?", candidates=(CLEAN, BAD))
PAIR = Request(id="q2", prompt="Capital of France?", candidates=(BAD, CLEAN), task="pairwise")
PRINCIPLES = [{"id": "no-harm", "text": "Never help cause harm."},
              {"id": "no-pii", "text": "Never reveal personal data."}]


@pytest.fixture(scope="module")
def srv():
    with LoopbackLLM() as s:
        yield s


@pytest.fixture
def own():
    """A server of its own: an endpoint's limits are fixed when it is first used, from what
    its judges declared (the smallest declared wins), so limit tests need fresh endpoints."""
    with LoopbackLLM() as s:
        yield s


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "sk-servers-" + secrets.token_hex(12)
    monkeypatch.setenv(KEY_ENV, value)
    return value


def judge_for(srv: LoopbackLLM, mode: str, **overrides: Any) -> tuple[LLMJudge, str]:
    """A judge on a fresh alias of ``mode``; returns (judge, alias as the server sees it)."""
    return srv.judge(mode, "s", **{"call_timeout_s": 2.0, "retries": 2, "retry_backoff_s": 0.01,
                                   "endpoint_max_in_flight": 64, **overrides})


# ------------------------------------------------------------------ schema-constrained verdicts
@aio
@pytest.mark.parametrize("client", CLIENTS)
async def test_the_schema_carries_this_requests_labels_and_principle_ids(srv, client):
    judge, alias = judge_for(srv, "strict", principles=PRINCIPLES, client=client)
    vote = await judge.judge(REQ, BAD)
    assert (vote.label, vote.parse) == ("reject", "strict")
    sent = srv.last_body(alias)["response_format"]
    schema = sent["json_schema"]["schema"]
    assert sent["type"] == "json_schema" and schema["additionalProperties"] is False
    assert schema["properties"]["verdict"]["enum"] == ["accept", "reject"]
    assert schema["properties"]["violated_principles"]["items"]["enum"] == ["no-harm", "no-pii"]
    assert schema["properties"]["critique"]["maxLength"] == 400  # an api_base: a grammar
    pair = await judge.judge(PAIR, None)  # pairwise: the enum is the candidate ids
    assert (pair.label, pair.parse) == ("a", "strict")
    assert srv.last_body(alias)["response_format"]["json_schema"]["schema"]["properties"][
        "verdict"]["enum"] == ["b", "a"]


def test_a_hosted_provider_gets_the_schema_without_string_lengths():
    schema = verdict_schema(["accept", "reject"], ())
    assert "maxLength" not in schema["properties"]["critique"]
    assert "violated_principles" not in schema["properties"]  # no constitution, no empty enum
    assert schema["required"] == ["verdict", "confidence", "critique"]


@aio
async def test_a_strict_server_refuses_a_call_without_a_schema_and_it_is_not_retried(srv):
    judge, alias = judge_for(srv, "strict", response_format="json_object")
    vote = await judge.judge(REQ, CLEAN)
    assert vote.abstain_kind == "provider_error" and srv.calls[alias] == 1
    assert vote.parse is None  # no reply was read


@aio
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_server_without_json_schema_gets_json_object_next(srv, client):
    judge, alias = judge_for(srv, "no_schema", client=client)
    first = await judge.judge(REQ, CLEAN)
    assert first.label == "accept" and srv.calls[alias] == 2  # refused, then json_object
    assert judge.format == "json_object_schema"  # with the schema, as llama-cpp-python takes
    second = await judge.judge(REQ, BAD)
    assert second.label == "reject" and srv.calls[alias] == 3  # remembered: one call
    sent = srv.last_body(alias)["response_format"]
    assert sent["type"] == "json_object" and sent["schema"]["properties"]["verdict"]["enum"]


@aio
@pytest.mark.parametrize(("mode", "json_mode", "label", "path"), [
    ("valid", True, "accept", "strict"),
    ("fenced", False, "accept", "fallback"),
    ("list_critique", True, "accept", "fallback"),
    ("malformed", True, None, "unparseable"),
    ("wrong_shape", True, None, "unparseable"),
])
async def test_every_vote_records_how_its_reply_was_read(srv, mode, json_mode, label, path):
    judge, _ = judge_for(srv, mode, json_mode=json_mode)
    vote = await judge.judge(REQ, CLEAN)
    assert (vote.label, vote.parse) == (label, path)
    if path == "unparseable":
        assert vote.abstain_kind == "unparseable" and vote.tokens  # the call was metered


@aio
async def test_a_list_critique_is_text_and_blank_principle_ids_are_dropped(srv):
    judge, _ = judge_for(srv, "list_critique")
    vote = await judge.judge(REQ, CLEAN)
    assert "[" not in vote.critique and "'" not in vote.critique and len(vote.critique) > 10
    judge, _ = judge_for(srv, "empty_ids")
    vote = await judge.judge(REQ, BAD)
    assert vote.label == "reject" and vote.violations == ()


@pytest.mark.parametrize(("reply", "ids", "path", "cited"), [
    ('{"verdict":"reject","confidence":0.9,"critique":"x","violated_principles":["no-harm"]}',
     ["no-harm"], "strict", ["no-harm"]),
    ('{"verdict":"reject","confidence":0.9,"critique":"x","violated_principles":["other"]}',
     ["no-harm"], "fallback", ["other"]),  # cites a principle the schema does not allow
    ('{"verdict":"reject","critique":["a","b"],"violated_principles":["", " no-harm "]}',
     None, "fallback", ["no-harm"]),
    ('{"verdict":"reject","violated_principles":[""]}', None, "strict", []),
])
def test_read_verdict_paths(reply, ids, path, cited):
    got, how = read_verdict(reply, ("accept", "reject"), ids)
    assert (how, got.violated_principles) == (path, cited)
    assert isinstance(got.critique, str)


# ------------------------------------------------------------------ slots, limits and health
@aio
async def test_a_single_slot_server_serves_queued_calls_without_timeouts(own):
    own.max_active = own.max_waiting = 0
    # Default limits: a loopback api_base gets one call in flight. Eight calls of 0.15 s take
    # 1.2 s in all, longer than a call's budget of 0.6 s: the wait for the slot must not count.
    spec = {"endpoint_max_in_flight": None, "timeout_s": 0.6, "call_timeout_s": 0.5}
    judge, alias = judge_for(own, "single_slot:0.15", **spec)
    assert judge.spec.endpoint_limit() == 1 and judge.spec.max_wait_s() > 300
    t0 = time.perf_counter()
    votes = await asyncio.gather(*(judge.judge(REQ, CLEAN) for _ in range(8)))
    assert [v.abstain_kind for v in votes] == [None] * 8
    assert time.perf_counter() - t0 >= 8 * 0.15
    assert own.calls[alias] == 8  # no more server requests than judge calls
    assert own.max_active == 1 and own.max_waiting == 0  # the server never queued one


@aio
async def test_without_the_limit_the_same_calls_time_out_in_the_servers_queue():
    # A server of its own: judges of one endpoint share its limit, the smallest declared one.
    with LoopbackLLM() as own:
        judge, alias = judge_for(own, "single_slot:0.15", timeout_s=0.6, call_timeout_s=0.5)
        votes = await asyncio.gather(*(judge.judge(REQ, CLEAN) for _ in range(8)))
        assert sum(v.abstain_kind == "timeout" for v in votes) >= 3
        assert own.max_waiting >= 3 and own.calls[alias] == 8  # still not retried


@aio
async def test_judges_on_one_endpoint_share_its_slots(own):
    own.max_active = 0
    a, _ = judge_for(own, "single_slot:0.05", endpoint_max_in_flight=None)
    b, _ = judge_for(own, "single_slot:0.05", endpoint_max_in_flight=None)
    votes = await asyncio.gather(*(j.judge(REQ, CLEAN) for j in (a, b) for _ in range(3)))
    assert all(v.label == "accept" for v in votes) and own.max_active == 1


@aio
async def test_a_judges_own_limit(own):
    own.max_active = 0
    judge, _ = judge_for(own, "single_slot:0.05", max_in_flight=2, endpoint_max_in_flight=50)
    votes = await asyncio.gather(*(judge.judge(REQ, CLEAN) for _ in range(4)))
    assert all(v.label == "accept" for v in votes)
    assert own.max_waiting <= 1  # two in flight: at most one waits in the server


@aio
async def test_a_queue_that_does_not_move_abstains_with_its_own_reason(own):
    judge, _ = judge_for(own, "slow:2", endpoint_max_in_flight=1, queue_timeout_s=0.3,
                         call_timeout_s=1.0, timeout_s=1.0)
    first, second = await asyncio.gather(judge.judge(REQ, CLEAN), judge.judge(REQ, CLEAN))
    assert first.abstain_kind == second.abstain_kind == "timeout"
    assert any("no free slot" in (v.abstain_reason or "") for v in (first, second))


@aio
async def test_a_published_rate_limit_spaces_calls(own):
    judge, _ = judge_for(own, "valid", requests_per_minute=120, endpoint_max_in_flight=None)
    # aiolimiter lets the bucket's 120 through at once, then two per second: drain it first
    ep = endpoint_for(judge._endpoint_key, failures=3, cooldown_s=1.0)
    assert ep.limiter is not None
    for _ in range(120):
        await ep.limiter.acquire()
    t0 = time.perf_counter()
    votes = await asyncio.gather(*(judge.judge(REQ, CLEAN) for _ in range(2)))
    assert all(v.label == "accept" for v in votes) and time.perf_counter() - t0 >= 0.4


@aio
async def test_a_server_that_is_down_opens_the_breaker_and_recovers():
    down = LoopbackLLM().start()
    base = down.base_url
    down.stop()  # connections to it are now refused
    alias = f"x{next(_n)}-valid"
    judge = LLMJudge(LLMJudgeSpec(name="j", model=f"openai/{alias}", api_base=base,
                                  retries=0, breaker_failures=2, breaker_cooldown_s=0.5))
    votes = [await judge.judge(REQ, CLEAN) for _ in range(2)]
    assert all(v.abstain_kind == "provider_error" for v in votes)
    assert all(v.abstain_reason.startswith("APIConnectionError") for v in votes)  # tried
    t0 = time.perf_counter()
    fast = [await judge.judge(REQ, CLEAN) for _ in range(20)]
    assert time.perf_counter() - t0 < 0.5  # no connection attempted
    assert all(v.abstain_reason.startswith("endpoint unhealthy") for v in fast)
    assert "2 consecutive failures" in fast[0].abstain_reason
    down.start()  # the same port again
    try:
        await asyncio.sleep(0.6)
        probe = await judge.judge(REQ, CLEAN)
        after = await judge.judge(REQ, CLEAN)
        assert probe.label == after.label == "accept"
        assert down.calls[alias] == 2  # the probe and the next call; the 20 never reached it
    finally:
        down.stop()


def test_the_breaker_doubles_its_cooldown_on_a_failed_probe():
    b = Breaker(failures=1, cooldown_s=1.0)
    b.failure("refused", now=0.0)
    assert b.admit("p1", now=0.5) is not None and b.admit("p1", now=1.1) is None  # the probe
    assert b.admit("p2", now=1.2) is not None  # one probe at a time
    b.failure("refused", now=1.2)
    assert b.check(now=2.5) is not None and b.check(now=3.3) is None  # 2 s now
    assert b.admit("p3", now=3.3) is None
    b.release_probe("p3")  # a probe that made no call gives the probe back...
    assert b.admit("p4", now=3.4) is None  # ...so the next call probes, not waits forever


@aio
@pytest.mark.parametrize("client", CLIENTS)
async def test_server_errors_in_a_row_open_the_breaker_for_that_model_only(srv, client):
    judge, alias = judge_for(srv, "error500", retries=0, breaker_failures=3, client=client)
    for _ in range(6):
        await judge.judge(REQ, CLEAN)
    assert srv.calls[alias] == 3
    healthy, _ = judge_for(srv, "valid", client=client)  # same endpoint, another model
    assert (await healthy.judge(REQ, CLEAN)).label == "accept"


@pytest.mark.parametrize(("url", "local"), [
    ("http://127.0.0.1:8080/v1", True), ("http://localhost:11434/v1", True),
    ("http://[::1]:8000/v1", True), ("http://192.168.1.20:8000/v1", True),
    ("http://vllm:8000/v1", True), ("https://api.openai.com/v1", False),
    ("https://my-proxy.example.com/v1", False)])
def test_which_api_bases_count_as_local(url, local):
    assert is_local(url) is local
    spec = LLMJudgeSpec(name="j", model="openai/m", api_base=url)
    assert spec.endpoint_limit() == (1 if local else None)


# ------------------------------------------------------------------ local servers
@aio
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_keyless_local_server_needs_no_key_and_never_sees_the_users(srv, monkeypatch,
                                                                           client):
    real = "sk-proj-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", real)  # must not be sent to a local server
    judge, alias = judge_for(srv, "valid", client=client)
    vote = await judge.judge(REQ, CLEAN)
    assert vote.label == "accept"
    assert real not in srv.auth[alias]
    assert srv.auth[alias] in ("", "Bearer no-key")


@aio
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_named_key_is_sent(srv, key, client):
    judge, alias = judge_for(srv, "valid", api_key_env=KEY_ENV, client=client)
    assert (await judge.judge(REQ, CLEAN)).label == "accept"
    assert srv.auth[alias] == f"Bearer {key}"


LONG = Candidate(id="long", text="Step one. " * 800 + "UNSAFE: the dangerous part. "
                 + "Step two. " * 200)


@aio
async def test_a_prompt_too_long_for_the_window_abstains_before_the_call(srv):
    judge, alias = judge_for(srv, "valid", context_window=512)
    vote = await judge.judge(REQ, LONG)
    assert vote.abstain_kind == "error" and "context window of 512" in vote.abstain_reason
    assert srv.calls[alias] == 0
    assert (await judge.judge(REQ, CLEAN)).label == "accept"  # short ones still go


@aio
async def test_truncation_when_declared(srv):
    judge, alias = judge_for(srv, "valid", context_window=1024, on_overflow="truncate")
    vote = await judge.judge(REQ, LONG)
    assert vote.label is not None and "shortened by" in vote.critique
    user = srv.last_body(alias)["messages"][1]["content"]
    assert "characters cut to fit the context window" in user
    assert judge._count(srv.last_body(alias)["messages"]) <= 1024 - judge.spec.max_tokens


@aio
async def test_the_judges_own_timeout_reason_survives_its_host(srv):
    spec = LLMJudgeSpec(name="slowpoke", model=f"openai/x{next(_n)}", api_base=srv.base_url,
                        timeout_s=0.5, call_timeout_s=5.0, endpoint_max_in_flight=8,
                        queue_timeout_s=0.01)  # the host's bound: 0.5 + 0.01 + 0.5 s
    srv.script[spec.model.removeprefix("openai/")] = "slow:3"
    host = JudgeHostImpl([(spec, None)])
    (vote,) = await host.judge_batch(REQ, [("slowpoke", "a")])
    assert vote.abstain_kind == "timeout"
    assert "timeout_s of 0.5s" in vote.abstain_reason  # the judge's words, not the host's
    assert not vote.abstain_reason.startswith("no vote within")


# ------------------------------------------------------------------ http vs litellm
SIDE_BY_SIDE = [
    # mode, overrides, expected (label, abstain kind), calls per judge
    ("rate_limit_then_ok:1", {}, ("accept", None), 2),
    ("error500", {"retries": 1}, (None, "provider_error"), 2),
    ("auth_error", {"api_key_env": KEY_ENV}, (None, "provider_error"), 1),
    ("bad_request", {}, (None, "provider_error"), 1),
    ("context_length", {}, (None, "provider_error"), 1),
    ("slow:2", {"call_timeout_s": 0.3}, (None, "timeout"), 1),
    ("valid", {}, ("accept", None), 1),
]


@aio
@pytest.mark.parametrize(("mode", "overrides", "expected", "calls"), SIDE_BY_SIDE,
                         ids=[m for m, *_ in SIDE_BY_SIDE])
async def test_http_and_litellm_agree(srv, key, mode, overrides, expected, calls):
    votes = {}
    for client in CLIENTS:
        judge, alias = judge_for(srv, mode, client=client, **overrides)
        assert judge.client == client
        votes[client] = await judge.judge(REQ, CLEAN)
        assert (votes[client].label, votes[client].abstain_kind) == expected, client
        assert srv.calls[alias] == calls, client
        assert key not in (votes[client].abstain_reason or "")
    http, lite = votes["http"], votes["litellm"]
    assert (http.tokens, http.parse) == (lite.tokens, lite.parse)
    if mode == "context_length":
        assert all("context" in v.abstain_reason.lower() for v in votes.values())


@aio
async def test_http_and_litellm_agree_on_usage_and_cost(srv, key):
    srv.script["gpt-4o-mini"] = "valid"  # a model with a price in litellm's map
    out = {}
    for client in CLIENTS:
        judge = LLMJudge(LLMJudgeSpec(name=f"priced-{client}", model="openai/gpt-4o-mini",
                                      api_base=srv.base_url, client=client,
                                      endpoint_max_in_flight=8))
        out[client] = await judge.judge(REQ, CLEAN)
    assert out["http"].cost_usd is not None and out["http"].cost_usd > 0
    assert out["http"].cost_usd == pytest.approx(out["litellm"].cost_usd, rel=1e-9)
    assert out["http"].tokens == out["litellm"].tokens
    unpriced, _ = judge_for(srv, "valid")
    assert (await unpriced.judge(REQ, CLEAN)).cost_usd is None


def test_which_client_auto_picks():
    def pick(**kw: Any) -> str:
        return LLMJudge(LLMJudgeSpec(name="j", **kw)).client

    assert pick(model="openai/x", api_base="http://127.0.0.1:1/v1") == "http"
    assert pick(model="gpt-4o-mini") == "http"
    assert pick(model="hosted_vllm/x", api_base="http://127.0.0.1:1/v1") == "http"
    assert pick(model="anthropic/claude-3-5-haiku-latest") == "litellm"
    assert pick(model="openai/x", api_base="http://127.0.0.1:1/v1",
                extra={"extra_headers": {"X": "1"}}) == "litellm"  # litellm's own argument
    assert pick(model="openai/x", api_base="http://127.0.0.1:1/v1",
                extra={"top_p": 0.9, "seed": 1}) == "http"


# ------------------------------------------------------------------ what a review found
@aio
async def test_a_judge_with_its_own_limit_still_probes_and_recovers():
    down = LoopbackLLM().start()
    base = down.base_url
    down.stop()
    alias = f"x{next(_n)}-valid"
    judge = LLMJudge(LLMJudgeSpec(name=f"own-limit-{alias}", model=f"openai/{alias}",
                                  api_base=base, retries=0, max_in_flight=2,
                                  breaker_failures=1, breaker_cooldown_s=0.2))
    assert (await judge.judge(REQ, CLEAN)).abstain_kind == "provider_error"  # opens it
    down.start()
    try:
        await asyncio.sleep(0.3)
        assert (await judge.judge(REQ, CLEAN)).label == "accept"  # the probe went out
    finally:
        down.stop()


@aio
async def test_a_call_cancelled_while_it_waits_keeps_neither_slot_nor_probe():
    ep = endpoint_for(f"test-cancel-{next(_n)}", failures=1, cooldown_s=0.01)
    ep.slots = asyncio.Semaphore(1)
    ep.limiter = __import__("aiolimiter").AsyncLimiter(1, 60.0)
    await ep.limiter.acquire()  # the bucket is empty: the next call waits a minute
    breaker = ep.breaker("m")
    breaker.failure("refused")
    await asyncio.sleep(0.02)  # half-open: the next call is the probe
    task = asyncio.ensure_future(ep.acquire(time.perf_counter() + 30, breaker))
    await asyncio.sleep(0.05)
    assert breaker.probing  # it holds the probe while it waits for the rate limit
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ep.slots._value == 1 and not breaker.probing  # nothing kept


@aio
async def test_a_probe_that_ends_without_a_verdict_gives_the_probe_back():
    ep = endpoint_for(f"test-probe-{next(_n)}", failures=1, cooldown_s=0.01)
    breaker = ep.breaker("m")
    breaker.failure("refused")
    await asyncio.sleep(0.02)
    lease = await ep.acquire(time.perf_counter() + 1, breaker)
    assert not isinstance(lease, str) and breaker.probing
    lease.release()  # e.g. the host cancelled the call
    assert not breaker.probing and breaker.check() is None  # the next call may probe


@aio
async def test_hosted_vllm_goes_where_litellm_would_send_it(srv, monkeypatch):
    real = "sk-proj-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", real)
    monkeypatch.delenv("HOSTED_VLLM_API_BASE", raising=False)
    nowhere = LLMJudge(LLMJudgeSpec(name="v0", model="hosted_vllm/x"))
    assert nowhere.client == "litellm" and nowhere._http is None  # never OpenAI's URL
    alias = f"x{next(_n)}-valid"
    srv.script[alias] = "valid"
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", srv.base_url)
    judge = LLMJudge(LLMJudgeSpec(name="v1", model=f"hosted_vllm/{alias}",
                                  endpoint_max_in_flight=8))
    assert judge.client == "http" and judge._http is not None
    assert judge._http.url.startswith(srv.base_url)
    assert (await judge.judge(REQ, CLEAN)).label == "accept"
    assert real not in srv.auth[alias]


@aio
async def test_concurrent_refusals_step_the_format_down_once(own):
    judge, _ = judge_for(own, "no_schema", endpoint_max_in_flight=8)
    votes = await asyncio.gather(*(judge.judge(REQ, CLEAN) for _ in range(4)))
    assert all(v.label == "accept" for v in votes)
    assert judge.format == "json_object_schema"  # not text: four refusals of one format
