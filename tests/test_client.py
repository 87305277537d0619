"""consensus.client against a running service (the offline smoke panel) and a mock transport.

One Ray session and one service for the module; the retry and error-parsing tests use an
``httpx.MockTransport`` (no service), the connection test a closed port.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from consensus.client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConnectionFailed,
    ConsensusAPIError,
    ConsensusResult,
    NotFoundError,
    ServerError,
)
from consensus.service.auth import Tokens
from tests.conftest import ROOT
from tests.service_support import free_port, running_service

pytestmark = pytest.mark.ray

TOKEN = "ci-client-token-0123456789abcdef"
BENIGN = ("Say hi", ["Hello! How can I help?"])
HARMFUL = ("Tell me about cats", ["You are a worthless idiot."])


@pytest.fixture(scope="module")
def service(ray_session, tmp_path_factory):
    store = str(tmp_path_factory.mktemp("client") / "service.sqlite")
    with running_service([ROOT / "scenarios" / "safety_smoke.yaml"], store=store,
                         tokens=Tokens.parse(f"ci:{TOKEN}")) as svc:
        yield svc


@pytest.fixture
def client(service):
    with Client(service.url, token=TOKEN, backoff_s=0.05, seed=0) as c:
        yield c


def test_decide_pass_and_withheld(client):
    ok = client.decide(*BENIGN)
    assert isinstance(ok, ConsensusResult)
    assert ok.decision == "pass" and ok.passed and not ok.withheld, ok.reason
    assert ok.output == "Hello! How can I help?" and ok.accepted_candidate == "c1"
    assert ok.committed and not ok.replayed and ok.votes and ok.panel == "safety_smoke"
    bad = client.decide(*HARMFUL)
    assert bad.withheld and not bad.passed, bad.decision
    assert bad.output != HARMFUL[1][0]
    with pytest.raises(ValueError, match="frozen"):
        bad.decision = "pass"


def test_the_other_routes(client):
    assert client.health() is True
    assert "safety_smoke" in client.ready()["panels"]
    assert [p["name"] for p in client.panels()["panels"]] == ["safety_smoke"]
    assert "consensus_decisions_total" in client.metrics()


def test_async_client_decides(service):
    async def go() -> tuple[ConsensusResult, ConsensusResult, bool]:
        async with AsyncClient(service.url, token=TOKEN, seed=0) as c:
            ok, bad = await asyncio.gather(c.decide(*BENIGN), c.decide(
                HARMFUL[0], [{"id": "x", "text": HARMFUL[1][0], "generator": "m"}]))
            return ok, bad, await c.health()

    ok, bad, healthy = asyncio.run(go())
    assert ok.passed and ok.decision == "pass"
    assert bad.withheld and bad.decisions[0]["subject"] == "x"
    assert healthy


def test_a_repeated_id_is_replayed(client):
    first = client.decide(*BENIGN, id="client-replay-1")
    again = client.decide(*BENIGN, id="client-replay-1")
    assert first.id == again.id == "client-replay-1"
    assert not first.replayed and again.replayed
    assert again.decisions == first.decisions and again.decision == first.decision


def test_service_errors_are_typed(service, client):
    with pytest.raises(BadRequestError) as err:
        client.decide("p", [])
    assert err.value.status == 400 and err.value.param == "candidates"
    assert err.value.type == "invalid_request_error" and "candidates" in str(err.value)
    with pytest.raises(NotFoundError, match="unknown panel 'nope'"):
        client.decide("p", ["a"], panel="nope")
    wrong = "wrong-token-0000000000000000"
    with Client(service.url, token=wrong) as bad:
        with pytest.raises(AuthenticationError) as err:
            bad.decide(*BENIGN)
        assert err.value.status == 401 and err.value.code == "invalid_token"
        assert wrong not in str(err.value) and wrong not in repr(err.value)
        assert wrong not in repr(bad) and "***" in repr(bad)


# ---------------------------------------------------------------- retries (no service)
def doc(rid: str) -> dict:
    return {"id": rid, "decision": "pass", "action": "accept", "output": "ok",
            "committed": True, "replayed": False, "future_field": 1}


class Flaky:
    """A handler that answers ``fails`` (status codes or exceptions) in turn, then a decision."""

    def __init__(self, *fails: int | Exception):
        self.fails = list(fails)
        self.ids: list[str] = []
        self.auth: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.ids.append(json.loads(request.content)["id"])
        self.auth.append(request.headers.get("authorization"))
        if self.fails:
            fail = self.fails.pop(0)
            if isinstance(fail, Exception):
                raise fail
            return httpx.Response(fail, json={"error": {
                "message": f"status {fail}", "type": "server_error", "param": None,
                "code": "x"}})
        return httpx.Response(200, json=doc(self.ids[-1]))


def mock(handler: Flaky, **kw) -> Client:
    return Client("http://consensus.test", token=TOKEN, backoff_s=0.001, seed=1,
                  transport=httpx.MockTransport(handler), **kw)


def test_5xx_is_retried_with_the_same_id():
    handler = Flaky(503, 503)
    with mock(handler) as c:
        out = c.decide(*BENIGN)
    assert len(handler.ids) == 3 and len(set(handler.ids)) == 1 and out.id == handler.ids[0]
    assert handler.auth == [f"Bearer {TOKEN}"] * 3
    assert out.passed and out.model_extra == {"future_field": 1}


def test_transport_errors_are_retried_and_given_ids_kept():
    handler = Flaky(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), 502)
    with mock(handler) as c:
        assert c.decide(*BENIGN, id="mine").id == "mine"
    assert handler.ids == ["mine"] * 4


def test_4xx_is_never_retried():
    for status, kind in ((400, BadRequestError), (401, AuthenticationError),
                         (429, ConsensusAPIError)):
        handler = Flaky(status)
        with mock(handler) as c, pytest.raises(kind) as err:
            c.decide(*BENIGN)
        assert len(handler.ids) == 1 and err.value.status == status
        assert err.value.message == f"status {status}" and err.value.code == "x"


def test_retries_run_out_with_the_last_error():
    handler = Flaky(500, 503, 504)
    with mock(handler, retries=2) as c, pytest.raises(ServerError) as err:
        c.decide(*BENIGN)
    assert len(handler.ids) == 3 and err.value.status == 504


def test_a_body_that_is_not_json_is_cut_to_300_chars():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>" + "x" * 1000)

    with Client("http://consensus.test", retries=0,
                transport=httpx.MockTransport(handler)) as c, pytest.raises(ServerError) as err:
        c.panels()
    assert err.value.status == 502 and len(err.value.message) == 300


def test_async_client_retries_with_the_same_id():
    handler = Flaky(503, httpx.ConnectError("refused"))

    async def go() -> ConsensusResult:
        async with AsyncClient("http://consensus.test", token=TOKEN, backoff_s=0.001,
                               transport=httpx.MockTransport(handler)) as c:
            return await c.decide(*BENIGN)

    out = asyncio.run(go())
    assert handler.ids == [out.id] * 3


def test_the_jitter_is_seeded():
    a, b = (Client("http://x", backoff_s=1.0, seed=5) for _ in range(2))
    delays = [a._delay(n) for n in range(4)]
    assert delays == [b._delay(n) for n in range(4)]
    assert all(2 ** n * 0.5 <= d <= 2 ** n for n, d in enumerate(delays))


def test_a_closed_port_is_connection_failed():
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, token=TOKEN, retries=1, backoff_s=0.01, timeout=5) as c:
        assert c.health() is False
        with pytest.raises(ConnectionFailed) as err:
            c.decide(*BENIGN)
    assert err.value.status is None and "2 attempt" in str(err.value)
    assert isinstance(err.value, ConsensusAPIError)
    assert TOKEN not in str(err.value) and TOKEN not in repr(err.value)


def test_importing_the_client_loads_neither_ray_nor_litellm():
    code = ("import sys, consensus.client; "
            "print(sorted(m for m in ('ray', 'litellm', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
