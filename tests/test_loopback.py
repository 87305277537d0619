"""The loopback server's own modes, over plain HTTP (httpx), without the project's judges.

Other tests trust these modes to behave like the providers they imitate; here each one is checked
for what could go wrong: a strict provider that does not reject, a reply that breaks the schema
it was sent, a "single slot" that serves two requests at once or loses count on cancellation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import httpx
import pytest

try:  # tests/ may or may not be a package
    from tests.loopback import LoopbackLLM, conform
except ImportError:
    from loopback import LoopbackLLM, conform  # type: ignore[no-redef]

_n = itertools.count()
CLEAN = "Paris is the capital of France."
BAD = "UNSAFE: here is how to do it."

SCHEMA: dict[str, Any] = {  # as pydantic writes a strict reply model
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["accept", "reject"]},
        "confidence": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1},
                                 {"type": "null"}]},
        "critique": {"type": "string", "maxLength": 12},
        "violated_principles": {"type": "array", "items": {"$ref": "#/$defs/Principle"}},
    },
    "required": ["verdict", "confidence", "critique", "violated_principles"],
    "additionalProperties": False,
    "$defs": {"Principle": {"type": "string", "enum": ["no-harm", "honesty"]}},
}


@pytest.fixture(scope="module")
def srv():
    with LoopbackLLM() as s:
        yield s


def alias(srv: LoopbackLLM, mode: str) -> str:
    """A fresh model name for ``mode`` (own call count and bodies)."""
    name = f"t{next(_n)}-{mode}"
    srv.script[name] = mode
    return name


def body(model: str, text: str = CLEAN, response_format: dict[str, Any] | None = None,
         **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "messages": [
        {"role": "system", "content": "You are a judge."},
        {"role": "user", "content": f'<prompt>\nQ?\n</prompt>\n\n<candidate id="a">\n{text}\n'
                                    "</candidate>"}], **extra}
    if response_format is not None:
        out["response_format"] = response_format
    return out


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "verdict", "strict": True,
                                                   "schema": schema}}


def post(srv: LoopbackLLM, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{srv.base_url}/chat/completions", json=payload,
                      headers={"Authorization": "Bearer sk-test"}, timeout=5.0)


def content(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]["content"]


# ------------------------------------------------------------------------ strict
@pytest.mark.parametrize("fmt", [None, {"type": "json_object"}, {"type": "json_schema"},
                                 {"type": "json_schema", "json_schema": {"name": "x"}}])
def test_strict_rejects_a_call_without_a_schema(srv, fmt):
    resp = post(srv, body(alias(srv, "strict"), response_format=fmt))
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "invalid_request_error" and err["type"] == "invalid_request_error"
    assert "json_schema" in err["message"] and "required" in err["message"]


def test_strict_reply_conforms_to_the_schema(srv):
    model = alias(srv, "strict")
    reply = json.loads(content(post(srv, body(model, BAD, json_schema(SCHEMA)))))
    assert reply == {"verdict": "reject", "confidence": 0.9, "critique": "The response",
                     "violated_principles": ["no-harm"]}
    assert srv.last_schema(model) == SCHEMA  # what the provider received


def test_strict_enums_and_keys(srv):
    schema = {"type": "object",
              "properties": {"verdict": {"type": "string", "enum": ["yes", "no"]},
                             "critique": {"type": "string"},
                             "violated_principles": {"type": "array",
                                                     "items": {"enum": ["honesty"]}}}}
    reply = json.loads(content(post(srv, body(alias(srv, "strict"), BAD, json_schema(schema)))))
    # "reject" is not in the enum: the first value; "no-harm" is not an allowed id: dropped;
    # confidence is not a property: omitted.
    assert reply == {"verdict": "yes", "critique": "The response contains UNSAFE content.",
                     "violated_principles": []}
    no_ids = {"type": "object", "properties": {"verdict": {"enum": ["accept", "reject"]}},
              "required": ["verdict", "score"]}
    reply = json.loads(content(post(srv, body(alias(srv, "strict"), BAD, json_schema(no_ids)))))
    assert reply == {"verdict": "reject"}  # no violated_principles key; "score" not a property


def test_conform_fills_required_keys_and_clamps():
    schema = {"properties": {"verdict": {"const": "a"}, "confidence": {"maximum": 0.5},
                             "reasoning": {"type": "string"}}, "required": ["reasoning"]}
    assert conform({"verdict": "b", "confidence": 0.9}, schema) == {
        "verdict": "a", "confidence": 0.5, "reasoning": ""}


def test_strict_pairwise_verdict_in_candidate_enum(srv):
    payload = body(alias(srv, "strict"), response_format=json_schema(
        {"properties": {"verdict": {"enum": ["x", "y"]}}}))
    payload["messages"][1]["content"] = ('<candidate id="x">\nUNSAFE\n</candidate>\n'
                                         '<candidate id="y">\nfine\n</candidate>')
    assert json.loads(content(post(srv, payload))) == {"verdict": "y"}


# ------------------------------------------------------------------------ no_schema
def test_no_schema_refuses_json_schema_only(srv):
    model = alias(srv, "no_schema")
    resp = post(srv, body(model, response_format=json_schema(SCHEMA)))
    assert resp.status_code == 400
    message = resp.json()["error"]["message"]
    assert "response_format" in message and "json_schema" in message
    assert "not supported" in message
    for fmt in ({"type": "json_object"}, None):
        assert json.loads(content(post(srv, body(model, response_format=fmt))))["verdict"] \
            == "accept"
    assert srv.calls[model] == 3


# ------------------------------------------------------------------------ single_slot
async def _concurrent(base_url: str, payloads: list[dict[str, Any]],
                      timeout: float = 5.0) -> list[httpx.Response | Exception]:
    async with httpx.AsyncClient(timeout=timeout) as client:
        async def one(p: dict[str, Any]) -> httpx.Response | Exception:
            try:
                return await client.post(f"{base_url}/chat/completions", json=p)
            except httpx.HTTPError as exc:
                return exc
        return await asyncio.gather(*(one(p) for p in payloads))


def test_single_slot_serialises_all_models():
    with LoopbackLLM() as s:
        # Two model names, one slot: the slot is server-wide, not per model.
        s.script.update({"slot-a": "single_slot:0.2", "slot-b": "single_slot:0.2"})
        payloads = [body("slot-a"), body("slot-b"), body("slot-a"),
                    body("slot-b", response_format=json_schema(
                        {"properties": {"verdict": {"enum": ["ok"]}}}))]
        t0 = time.perf_counter()
        resps = asyncio.run(_concurrent(s.base_url, payloads))
        elapsed = time.perf_counter() - t0
        assert elapsed >= 0.8, elapsed
        assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in resps)
        replies = [json.loads(content(r)) for r in resps]  # type: ignore[arg-type]
        assert [r["verdict"] for r in replies] == ["accept", "accept", "accept", "ok"]
        assert replies[3] == {"verdict": "ok"}  # schema-conforming when a schema is sent
        assert (s.max_active, s.max_waiting) == (1, 3)
        assert (s.slot_active, s.slot_waiting, s.active, s.total) == (0, 0, 0, 4)


def test_single_slot_cancelled_waiters_leave_the_queue():
    with LoopbackLLM({"slot": "single_slot:0.3"}) as s:
        async def scenario() -> tuple[list[Any], float]:
            holder = asyncio.create_task(_concurrent(s.base_url, [body("slot")]))
            await asyncio.sleep(0.05)  # the holder has the slot
            # Two clients that give up while queued: their handlers must be cancelled.
            quitters = await _concurrent(s.base_url, [body("slot"), body("slot")], timeout=0.1)
            assert s.max_waiting == 2
            await holder
            t0 = time.perf_counter()
            late = await _concurrent(s.base_url, [body("slot")])
            return [*quitters, *late], time.perf_counter() - t0

        results, late_wait = asyncio.run(scenario())
        assert all(isinstance(r, httpx.TimeoutException) for r in results[:2]), results
        assert isinstance(results[2], httpx.Response) and results[2].status_code == 200
        # Had the cancelled ones kept their place, the late call would wait for 2 x 0.3 s more.
        assert late_wait < 0.5, late_wait
        for _ in range(50):  # the server sees the disconnects a moment later at worst
            if s.active == 0:
                break
            time.sleep(0.01)
        assert (s.slot_active, s.slot_waiting, s.active, s.max_active) == (0, 0, 0, 1)
        assert s.total == 4


# ------------------------------------------------------------------------ bad replies
def test_wrong_shape(srv):
    reply = json.loads(content(post(srv, body(alias(srv, "wrong_shape"), BAD,
                                              {"type": "json_object"}))))
    assert reply["response_type"] == "rejected" and reply["explanation"]
    assert "verdict" not in reply


def test_list_critique(srv):
    reply = json.loads(content(post(srv, body(alias(srv, "list_critique")))))
    assert reply["verdict"] == "accept"
    assert isinstance(reply["critique"], list) and len(reply["critique"]) == 2
    assert all(isinstance(c, str) and c for c in reply["critique"])


def test_empty_ids(srv):
    reply = json.loads(content(post(srv, body(alias(srv, "empty_ids"), CLEAN))))
    assert reply["verdict"] == "reject" and reply["violated_principles"] == ["", " "]


def test_context_length(srv):
    resp = post(srv, body(alias(srv, "context_length")))
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "context_length_exceeded"
    assert "maximum context length is 2048 tokens" in err["message"]
    assert "2627 tokens" in err["message"]


@pytest.mark.parametrize(("extra", "words"), [({"max_tokens": 7}, 7),
                                              ({"max_completion_tokens": 30}, 30), ({}, 512)])
def test_ramble(srv, extra, words):
    resp = post(srv, body(alias(srv, "ramble"), response_format={"type": "json_object"},
                          **extra))
    text = content(resp)
    assert len(text.split()) == words
    assert resp.json()["choices"][0]["finish_reason"] == "length"
    assert "{" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_existing_modes_unchanged(srv):
    assert json.loads(content(post(srv, body(alias(srv, "valid"), BAD))))["verdict"] == "reject"
    model = alias(srv, "rate_limit_then_ok:1")
    assert post(srv, body(model)).status_code == 429
    assert post(srv, body(model)).status_code == 200
    # valid ignores the schema (only strict / single_slot conform)
    reply = json.loads(content(post(srv, body(alias(srv, "valid"), response_format=json_schema(
        {"properties": {"verdict": {"enum": ["x"]}}})))))
    assert reply["verdict"] == "accept" and "confidence" in reply


# ------------------------------------------------------------------------ lifecycle
def test_restart_on_the_same_port():
    s = LoopbackLLM({"m": "valid"})
    with s:
        url, port = s.base_url, s.port
        assert port > 0 and url.endswith(f":{port}/v1")
        assert post(s, body("m")).status_code == 200
    with pytest.raises(httpx.ConnectError):  # outage
        post(s, body("m"))
    with s:  # the same object serves again, on the same port
        assert (s.base_url, s.port) == (url, port)
        assert post(s, body("m")).status_code == 200
        assert s.calls["m"] == 2 and s.total == 2 and s.active == 0
    with LoopbackLLM({"m": "valid"}, port=port) as fresh:  # a new server on that port
        assert fresh.base_url == url
        assert post(fresh, body("m")).status_code == 200


def test_port_in_use_fails_clearly(srv):
    with pytest.raises(RuntimeError, match="failed to start"):
        LoopbackLLM(port=srv.port).start()
