"""`consensus serve --ingress haproxy`: Ray Serve's HAProxy ingress, end to end.

The command runs as a child process (the HAProxy settings must be in the environment before
Ray starts, and Serve reads them once per process), on a free loopback port, with five LLM
judges and the upstream on a loopback server in this process. HTTP then goes from HAProxy
straight to the replica's own uvicorn, without Serve's Python proxy.

What is not tested here, because it does not hold: a client that goes away cancels its judge
and upstream calls only when HAProxy closes its connection to the replica, which it did in
26 of 36 rounds measured (docs/service.md, "Ingress"). The default ingress keeps
that contract (tests/test_service.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.loopback import loopback
from tests.service_support import free_port, llm_panel_scenario, write_yaml

pytestmark = pytest.mark.ray

TOKEN = "haproxy-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLI = [sys.executable, "-c", "from consensus.cli.app import main; main()"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", LITELLM_LOCAL_MODEL_COST_MAP="True", **extra)
    return env


@pytest.fixture(scope="module")
def srv():
    with loopback() as s:
        yield s


@pytest.fixture(scope="module")
def service(srv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("haproxy")
    llm = llm_panel_scenario(folder, srv.base_url, name="llm5", judge={"breaker_failures": 1000},
                             policy={"quorum": 3})
    cfg = write_yaml(folder / "service.yaml", {
        "panels": {"llm5": str(llm), "smoke": str(ROOT / "scenarios" / "safety_smoke.yaml")},
        "default_panel": "llm5",
        "upstream": {"model": "openai/parrot", "api_base": srv.base_url, "timeout_s": 10,
                     "retries": 0}})
    port = free_port()
    store = folder / "haproxy.sqlite"
    log = (folder / "serve.log").open("w")
    proc = subprocess.Popen([*CLI, "serve", str(cfg), "--port", str(port), "--store", str(store),
                             "--ingress", "haproxy"], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env=_env(CONSENSUS_API_TOKENS=f"t:{TOKEN}"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            assert proc.poll() is None, (folder / "serve.log").read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, (folder / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        yield type("Svc", (), {"url": url, "store": store, "proc": proc, "folder": folder})
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_refuses_to_start_without_tokens():
    """HAProxy listens on every interface (its stats and metrics ports), whatever --host says:
    without tokens the command refuses before Ray starts (exit 2, a clear message)."""
    out = subprocess.run([*CLI, "serve", str(ROOT / "scenarios" / "safety_smoke.yaml"),
                          "--ingress", "haproxy", "--port", str(free_port())],
                         check=False, capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env=_env(CONSENSUS_API_TOKENS=""))
    assert out.returncode == 2, out.stderr
    assert "--ingress haproxy makes the service listen on 0.0.0.0" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_requests_go_through_haproxy(service):
    """The service's port is HAProxy's: its config (in the private directory) binds it."""
    import glob

    cfgs = glob.glob("/tmp/csh*/*/haproxy.cfg")
    port = service.url.rsplit(":", 1)[1]
    assert any(f"bind 127.0.0.1:{port}\n" in Path(c).read_text() for c in cfgs), cfgs


def test_decides_and_records_once(service, srv):
    body = {"id": "hap-1", "prompt": "Say hi", "candidates": ["Hello there!"]}
    first = httpx.post(service.url + "/v1/consensus", json=body, headers=AUTH, timeout=60)
    assert first.status_code == 200, first.text
    assert first.json()["decision"] == "pass"
    assert len(first.json()["votes"]) == 5
    again = httpx.post(service.url + "/v1/consensus", json=body, headers=AUTH, timeout=60)
    assert again.json()["id"] == "hap-1" and again.headers["X-Consensus-Id"] == "hap-1"
    with sqlite3.connect(service.store) as db:
        rows = db.execute("SELECT run_id FROM decisions WHERE request_id = 'hap-1'").fetchall()
    assert len(rows) == 1, rows


def test_auth_and_size_limits_hold(service):
    r = httpx.post(service.url + "/v1/consensus", json={"prompt": "p", "candidates": ["a"]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    r = httpx.post(service.url + "/v1/consensus", content=b"{" + b" " * 2_000_000 + b"}",
                   headers={**AUTH, "content-type": "application/json"}, timeout=30)
    assert r.status_code == 413, r.text
    r = httpx.post(service.url + "/v1/consensus", content=b"{not json", timeout=30,
                   headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and "Traceback" not in r.text


def test_chat_completion_is_judged(service, srv):
    r = httpx.post(service.url + "/v1/chat/completions", headers=AUTH, timeout=60,
                   json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200, r.text
    assert r.headers["X-Consensus-Decision"] == "pass"
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    assert r.json()["usage"]["total_tokens"] > 0


def test_ctrl_c_stops_it_and_removes_haproxy_files(service):
    """Last: SIGINT stops the service within the 5 s drain plus shutdown (exit 0, also when it
    comes while the service, already answering /readyz, still finishes starting), and the
    private HAProxy directory is gone."""
    import glob

    mine = [c for c in glob.glob("/tmp/csh*/*/haproxy.cfg")
            if f"127.0.0.1:{service.url.rsplit(':', 1)[1]}\n" in Path(c).read_text()]
    assert len(mine) == 1
    started = time.monotonic()
    service.proc.send_signal(signal.SIGINT)
    assert service.proc.wait(timeout=90) == 0, (service.folder / "serve.log").read_text()[-2000:]
    took = time.monotonic() - started
    assert not Path(mine[0]).parent.parent.exists()
    assert took < 60, f"stopping took {took:.0f} s"
