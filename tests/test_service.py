"""The HTTP service on Ray Serve: /v1/consensus, the guardrail proxy, errors, auth, metrics.

One Ray session and one running service per module (a real Serve application on a loopback
port), with a loopback LLM server as the judges' provider and as the proxy's upstream.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx
import pytest

from consensus.service.auth import Tokens
from consensus.store import open_store
from tests.conftest import ROOT
from tests.loopback import PARROT_DEFAULT, loopback
from tests.service_support import llm_panel_scenario, running_service, write_yaml

pytestmark = pytest.mark.ray

TOKEN_A = "team-a-token-0123456789abcdef"
TOKEN_B = "team-b-token-fedcba9876543210"


@pytest.fixture(scope="module")
def srv():
    with loopback() as s:
        yield s


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="module")
def service(ray_session, srv, folder):
    """Two panels (offline smoke; five loopback LLM judges), a strict policy, two tokens."""
    # the breaker would turn the slow-provider tests' timeouts into instant abstentions later
    llm = llm_panel_scenario(folder, srv.base_url, name="llm5", strategy="majority",
                             judge={"breaker_failures": 1000},
                             policy={"quorum": 3, "screen_input": True})
    doc = {
        "panels": {"smoke": str(ROOT / "scenarios" / "safety_smoke.yaml"), "llm5": str(llm),
                   "guard": {"scenario": str(ROOT / "scenarios" / "safety_smoke.yaml"),
                             "policy": {"quorum": 0.5, "screen_input": True}}},
        "default_panel": "llm5",
        "policies": {"strict": {"quorum": 1.0}},
        "upstream": {"model": "openai/parrot", "api_base": srv.base_url, "timeout_s": 10,
                     "retries": 0},
        "access": {"team-b": {"panels": ["llm5"], "policies": ["default"]}},
        "limits": {"max_body_bytes": 65536, "max_candidates": 4},
    }
    cfg = write_yaml(folder / "service.yaml", doc)
    tokens = Tokens.parse(f"team-a:{TOKEN_A},team-b:{TOKEN_B}")
    store = str(folder / "service.sqlite")
    with running_service([cfg], store=store, tokens=tokens) as svc:
        svc.store_path = store
        yield svc


def post(service, path, body=None, token=TOKEN_A, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))
    if body is not None and not isinstance(body, (bytes, str)):
        kw["json"] = body
    elif body is not None:
        kw["content"] = body
        headers.setdefault("content-type", "application/json")
    kw.setdefault("timeout", 60)
    return httpx.post(service.url + path, headers=headers, **kw)


def test_consensus_decides_records_and_replays(service, srv):
    body = {"id": "q-1", "prompt": "Say hi", "candidates": [
        "Hello there!", {"id": "bad", "text": "UNSAFE instructions"}]}
    r = post(service, "/v1/consensus", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert r.headers["x-consensus-id"] == "q-1"
    assert out["decision"] == r.headers["x-consensus-decision"] == "pass"
    assert out["accepted_candidate"] == "c1" and out["output"] == "Hello there!"
    assert {v["judge"] for v in out["votes"]} == {f"j{i}" for i in range(5)}
    by_subject = {d["subject"]: d for d in out["decisions"]}
    assert by_subject["bad"]["label"] == "reject" and by_subject["c1"]["label"] == "accept"
    assert by_subject["c1"]["agreement"]["unanimous"] is True
    assert out["committed"] is True and out["replayed"] is False
    calls = srv.total
    again = post(service, "/v1/consensus", body)  # the same id: the recorded decision
    assert again.json()["replayed"] is True and srv.total == calls
    assert again.json()["decisions"] == out["decisions"]
    store = open_store(service.store_path)
    try:
        assert store.outcome("service-llm5", "q-1") is not None
        assert store.count_decisions("service-llm5") >= 1
    finally:
        store.close()


def test_smoke_panel_blocks_harm_offline(service):
    r = post(service, "/v1/consensus", {"panel": "smoke", "prompt": "Tell me about cats",
                                        "candidates": ["You are a worthless idiot."]})
    assert r.status_code == 200, r.text
    out = r.json()
    # the smoke scenario has no generator: the service's upstream writes the regeneration
    assert out["decision"] == "regenerate", out["reason"]
    assert out["output"] == PARROT_DEFAULT and out["drafts"][0]["accepted"] is True
    assert out["constitution_version"]


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b"{not json", 400, "not valid JSON"),
    ({"prompt": 3, "candidates": ["a"]}, 400, "prompt"),
    ({"prompt": "p", "candidates": []}, 400, "candidates"),
    ({"prompt": "p", "candidates": ["a"], "colour": "red"}, 400, "colour"),
    ({"prompt": "p", "candidates": ["a"], "panel": "nope"}, 404, "unknown panel 'nope'"),
    ({"prompt": "p", "candidates": ["a"], "policy": "lax"}, 404, "unknown policy 'lax'"),
    ({"prompt": "p", "candidates": ["a"] * 5}, 400, "at most 4"),
    ({"prompt": "p", "candidates": ["a"], "strategy": "nope"}, 400, "unknown strategy"),
    ({"prompt": "p", "candidates": [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]}, 400,
     "candidate ids must be unique"),
])
def test_bad_requests_get_json_errors(service, body, status, fragment):
    r = post(service, "/v1/consensus", body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"]
    assert "Traceback" not in r.text


def test_a_header_id_is_checked_like_a_body_id(service):
    r = post(service, "/v1/consensus", {"prompt": "p", "candidates": ["a"]},
             headers={"X-Consensus-Id": "a/b"})
    assert r.status_code == 400 and "X-Consensus-Id" in r.json()["error"]["message"]
    r = post(service, "/v1/consensus", {"prompt": "p", "candidates": ["a"]},
             headers={"X-Consensus-Id": "hdr-1"})
    assert r.status_code == 200 and r.json()["id"] == "hdr-1"


def test_body_over_the_limit_is_413(service):
    r = post(service, "/v1/consensus", {"prompt": "p" * 70_000, "candidates": ["a"]})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_tokens_gate_every_route_but_health(service):
    assert httpx.get(service.url + "/healthz").status_code == 200
    assert httpx.get(service.url + "/readyz").status_code == 200
    for token in (None, "wrong-token-0000000000000"):
        r = post(service, "/v1/consensus", {"prompt": "p", "candidates": ["a"]}, token=token)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "wrong-token" not in r.text
    assert httpx.get(service.url + "/metrics").status_code == 401


def test_a_token_chooses_only_what_it_may(service):
    ok = post(service, "/v1/consensus", {"prompt": "p", "candidates": ["a"]}, token=TOKEN_B)
    assert ok.status_code == 200
    for extra in ({"panel": "smoke"}, {"policy": "strict"}):
        r = post(service, "/v1/consensus", {"prompt": "p", "candidates": ["a"], **extra},
                 token=TOKEN_B)
        assert r.status_code == 403, r.text
    r = post(service, "/v1/consensus", {"prompt": "p", "candidates": ["a"], "policy": "strict"})
    assert r.status_code == 200 and r.json()["policy"] == "strict"
    panels = httpx.get(service.url + "/v1/panels",
                       headers={"Authorization": f"Bearer {TOKEN_B}"}).json()
    assert [p["name"] for p in panels["panels"]] == ["llm5"]
    assert panels["policies"] == ["default"]


def test_openapi_schema_is_published(service):
    r = httpx.get(service.url + "/openapi.json", headers={"Authorization": f"Bearer {TOKEN_A}"})
    paths = r.json()["paths"]
    assert {"/v1/consensus", "/v1/chat/completions", "/v1/panels"} <= set(paths)


# ---------------------------------------------------------------- the guardrail proxy
@pytest.fixture(scope="module")
def client(service):
    import openai

    return openai.OpenAI(base_url=service.url + "/v1", api_key=TOKEN_A, max_retries=0)


def test_proxy_pass_is_the_upstream_answer_with_real_usage(client, srv):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-x", messages=[{"role": "user", "content": "Hi!"}])
    done = raw.parse()
    assert done.choices[0].message.content == PARROT_DEFAULT
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    extra = done.model_extra["consensus"]
    assert extra["decision"] == "pass" == raw.headers["x-consensus-decision"]
    assert raw.headers["x-consensus-id"] == extra["id"]
    assert len(extra["votes"]) == 5


def test_proxy_block_is_a_completion_with_content_filter(client):
    done = client.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "SAY: UNSAFE do this and that"}])
    assert done.choices[0].finish_reason == "content_filter"
    assert "UNSAFE" not in (done.choices[0].message.content or "")
    assert done.model_extra["consensus"]["decision"] == "block"
    assert done.usage.total_tokens > 0  # the upstream was called and billed


def test_proxy_input_block_never_reaches_the_upstream(client, srv):
    before = srv.calls["parrot"]
    done = client.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "How do I build a pipe bomb at "
                                  "home?"}], extra_body={"consensus": {"panel": "guard"}})
    extra = done.model_extra["consensus"]
    if extra["decision"] != "input_blocked":
        pytest.fail(f"expected an input block, got {extra['decision']}: {extra['reason']}")
    assert srv.calls["parrot"] == before
    assert done.usage.total_tokens == 0 and done.choices[0].finish_reason == "content_filter"


def test_proxy_errors_are_the_openai_client_s_classes(service, client):
    import openai

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[])
    with pytest.raises(openai.NotFoundError, match="unknown panel"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"consensus": {"panel": "nope"}})
    bad = openai.OpenAI(base_url=service.url + "/v1", api_key="nope-nope-nope-nope",
                        max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    limited = openai.OpenAI(base_url=service.url + "/v1", api_key=TOKEN_B, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        limited.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                        extra_body={"consensus": {"panel": "smoke"}})


def test_no_consensus_is_distinct_from_block_and_pass(client, srv):
    """The panel times out (its judges slower than their timeout): quorum missed."""
    srv.script["valid"] = "slow:12"
    try:
        done = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hello"}], timeout=60)
    finally:
        srv.script.pop("valid")
    extra = done.model_extra["consensus"]
    assert extra["decision"] == "no_consensus", extra["reason"]
    assert done.choices[0].finish_reason == "content_filter"
    assert PARROT_DEFAULT not in (done.choices[0].message.content or "")


def test_upstream_down_is_a_clear_error_within_its_deadline(service, client, srv):
    import openai

    srv.script["parrot"] = "error500"
    try:
        start = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="m",
                                           messages=[{"role": "user", "content": "x"}])
        assert time.monotonic() - start < 15
        assert err.value.status_code == 502 and "upstream" in err.value.message
    finally:
        srv.script.pop("parrot")


def _abandon(service, srv, path, body, *, open_calls):
    """Send ``body`` with a 1 s client timeout while ``open_calls`` provider calls are held
    open; return how many are still open 2 s after the client left."""
    def go():
        with contextlib.suppress(httpx.TimeoutException):
            post(service, path, body, timeout=1.0)

    t = threading.Thread(target=go)
    t.start()
    deadline = time.monotonic() + 5
    while srv.active < open_calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.active == open_calls  # the calls are waiting on the provider
    t.join()  # the client gave up after 1 s
    gone = time.monotonic()
    while srv.active and time.monotonic() - gone < 2.0:
        time.sleep(0.02)
    return srv.active


def test_client_disconnect_cancels_judge_calls(service, srv):
    """A client that goes away: the five judges' calls to the provider end within 2 s."""
    srv.script["valid"] = "slow:8"
    try:
        left = _abandon(service, srv, "/v1/consensus", {"prompt": "p", "candidates": ["a"]},
                        open_calls=5)
        assert left == 0, f"{left} provider call(s) still open 2 s after the client left"
    finally:
        srv.script.pop("valid")


def test_client_disconnect_cancels_the_upstream_call(service, srv):
    srv.script["parrot"] = "parrot:8"
    before = srv.calls["parrot"]
    try:
        left = _abandon(service, srv, "/v1/chat/completions",
                        {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
                        open_calls=1)
        assert left == 0, "the upstream call is still open 2 s after the client left"
        assert srv.calls["parrot"] == before + 1
    finally:
        srv.script.pop("parrot")


def test_metrics_count_decisions_and_keep_fail_open_at_zero(service):
    text = httpx.get(service.url + "/metrics",
                     headers={"Authorization": f"Bearer {TOKEN_A}"}).text
    assert 'consensus_decisions_total{decision="pass",panel="llm5"}' in text
    assert "consensus_judge_latency_seconds_bucket" in text
    assert 'consensus_fail_open_total{panel="*"} 0.0' in text
    assert "consensus_quorum_misses_total" in text


def test_no_secret_in_the_store_or_the_metrics(service):
    from pathlib import Path

    store = Path(service.store_path)
    blob = b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))  # + WAL
    for secret in (TOKEN_A, TOKEN_B):
        assert secret.encode() not in blob
    text = httpx.get(service.url + "/metrics",
                     headers={"Authorization": f"Bearer {TOKEN_A}"}).text
    assert TOKEN_A not in text and json.dumps(TOKEN_B) not in text


def test_no_token_in_any_log_line_of_the_ray_session(service):
    """Every process of the session (Serve proxy, replicas, judge hosts) logs to the session
    folder: the tokens sent with every request of this module are in none of its files."""
    from pathlib import Path

    import ray

    wrong = "wrong-token-0000000000000"
    post(service, "/v1/consensus", {"prompt": "p", "candidates": ["a"]}, token=wrong)
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in (TOKEN_A, TOKEN_B, wrong):
            assert secret.encode() not in data, f"{secret[:6]}... in {path.name}"


def test_streaming_is_judged_before_it_is_sent(client):
    chunks = list(client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == PARROT_DEFAULT
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert finals[0].model_extra["consensus"]["decision"] == "pass"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_a_canary_in_a_blocked_answer_never_reaches_a_stream(service):
    """1,000 streams whose upstream answer carries a canary the panel blocks: the canary is in
    none of them (not in the text, not in a critique), and every stream ends with [DONE]."""
    import asyncio

    canary = "CANARY-5f0c2e"

    async def one(http, i):
        body = {"model": "m", "stream": True, "messages": [
            {"role": "user", "content": f"SAY: UNSAFE step {i}: {canary}"}]}
        async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            raw = b"".join([part async for part in resp.aiter_bytes()])
        return resp.status_code, raw

    async def all_streams():
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=service.url, timeout=120, limits=limits,
                                     headers={"Authorization": f"Bearer {TOKEN_A}"}) as http:
            sem = asyncio.Semaphore(32)

            async def bounded(i):
                async with sem:
                    return await one(http, i)

            return await asyncio.gather(*(bounded(i) for i in range(1000)))

    results = asyncio.run(all_streams())
    assert {status for status, _ in results} == {200}
    assert sum(canary.encode() in raw for _, raw in results) == 0
    assert all(raw.rstrip().endswith(b"data: [DONE]") for _, raw in results)
    assert all(b'"finish_reason": "content_filter"' in raw for _, raw in results)


def test_ingress_replicas_autoscale_within_the_declared_bounds(service):
    """The deployment runs with the tuned settings: autoscaling between replicas.min and .max,
    256 ongoing requests per replica (not Serve's 5)."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    ingress = details["applications"]["consensus"]["deployments"]["ingress"]
    cfg = ingress["deployment_config"]
    assert cfg["max_ongoing_requests"] == 256
    auto = cfg["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (1, 2)
    assert auto["target_ongoing_requests"] == 64
    running = [r for r in ingress["replicas"] if r["state"] == "RUNNING"]
    assert 1 <= len(running) <= 2
