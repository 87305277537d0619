"""A loopback OpenAI-compatible chat-completions server for tests and benchmarks.

One server on ``127.0.0.1`` (ephemeral port, aiohttp in a background thread) serves many judges:
its behaviour is scripted per *model name*, the ``model`` field of the request body. litellm strips
the provider prefix, so a judge with ``model="openai/slow:2"`` and ``api_base=srv.base_url`` sends
``"slow:2"``. The mode of a model is ``script.get(model, model)``, so a model string can name its
mode directly or be an alias that ``script`` maps to one.

Modes:
    ``valid``                  JSON verdict (see below).
    ``fenced``                 The same JSON inside a ```json fence with prose around it.
    ``malformed``              Prose without any JSON.
    ``slow:<s>`` / ``latency:<s>``  A valid reply after ``s`` seconds.
    ``rate_limit_then_ok:<n>`` The first ``n`` calls of that model get HTTP 429, then valid.
    ``error500``               Always HTTP 500.
    ``auth_error``             Always HTTP 401; the error message echoes the bearer token, as
                               careless providers do, so tests can check that judges scrub it.
    ``auth_error_partial``     Always HTTP 401 echoing part of the token, masked the way OpenAI
                               does (``sk-lo****...`` and its last 8 characters).
    ``bad_request``            Always HTTP 400.

The valid verdict is deterministic. The server reads the candidate blocks
(``<candidate id="...">...</candidate>``) of the last user message (the whole message when there
are none). One block: ``reject`` if its text contains ``marker`` (default ``"UNSAFE"``), else
``accept``. Several blocks (pairwise): the id of the first candidate without the marker.

Example:
    >>> with LoopbackLLM() as srv:  # doctest: +SKIP
    ...     vote = asyncio.run(LLMJudge(LLMJudgeSpec(name="j", model="openai/valid",
    ...                        api_base=srv.base_url)).judge(request, cand))
    ...     srv.calls["valid"]
    1
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, Self

from aiohttp import web

_CANDIDATE = re.compile(r'<candidate id="([^"]*)">\n?(.*?)\n?</candidate>', re.DOTALL)


class LoopbackLLM:
    """OpenAI-compatible test server; a context manager (see module docstring).

    Args:
        script: Model name -> mode, for aliases (``{"judge-a": "latency:0.05"}``).
        marker: Word whose presence in a candidate makes the ``valid`` verdict ``reject``.
        violation: Principle id reported on rejections.
        keep_bodies: Request bodies kept per model (oldest dropped first).

    Attributes:
        base_url: ``http://127.0.0.1:PORT/v1`` once started.
        script: The model -> mode mapping; mutable while serving (tests add aliases so that
            each gets its own call count).
        calls: Calls received per model name (a Counter).
        bodies: Last ``keep_bodies`` JSON request bodies per model name.
        auth: Last ``Authorization`` header per model name.
    """

    def __init__(
        self,
        script: Mapping[str, str] | None = None,
        *,
        marker: str = "UNSAFE",
        violation: str = "no-harm",
        keep_bodies: int = 20,
    ) -> None:
        self.script = dict(script or {})
        self.marker = marker
        self.violation = violation
        self.calls: Counter[str] = Counter()
        self.bodies: dict[str, deque[dict[str, Any]]] = defaultdict(
            lambda: deque(maxlen=keep_bodies))
        self.auth: dict[str, str] = {}
        self.base_url = ""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Start serving in a daemon thread; returns once the port is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # noqa: BLE001 - re-raised by the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="loopback-llm", daemon=True)
        self._thread.start()
        if not ready.wait(10.0):
            raise RuntimeError("loopback server did not start within 10 s")
        if failure:
            raise RuntimeError("loopback server failed to start") from failure[0]
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/chat/completions", self._handle)
        # handler_cancellation: a client that gave up (timeout) cancels its slow handler.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        self._runner = runner
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent)."""
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None or thread is None:
            return
        if runner is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
            with suppress(Exception):  # best effort on shutdown
                fut.result(timeout=5.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5.0)
        self._loop = self._runner = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- inspection
    def last_body(self, model: str) -> dict[str, Any]:
        """The last request body received for ``model`` (KeyError if none)."""
        with self._lock:
            if not self.bodies.get(model):
                raise KeyError(model)
            return self.bodies[model][-1]

    def reset(self) -> None:
        """Forget calls, bodies and headers."""
        with self._lock:
            self.calls.clear()
            self.bodies.clear()
            self.auth.clear()

    # ----------------------------------------------------------------- behaviour
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        with self._lock:
            self.calls[model] += 1
            n = self.calls[model]
            self.bodies[model].append(body)
            self.auth[model] = request.headers.get("Authorization", "")
        mode, _, arg = self.script.get(model, model).partition(":")
        if mode in ("slow", "latency"):
            await asyncio.sleep(float(arg or 0))
        elif mode == "rate_limit_then_ok" and n <= int(arg or 1):
            return _error(429, "Rate limit reached, please retry.", "rate_limit_exceeded")
        elif mode == "error500":
            return _error(500, "The server had an error processing your request.", "server_error")
        elif mode == "bad_request":
            return _error(400, "Invalid request.", "invalid_request_error")
        elif mode == "auth_error":
            token = self.auth[model].removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {token}.", "invalid_api_key")
        elif mode == "auth_error_partial":
            token = self.auth[model].removeprefix("Bearer ")
            shown = f"{token[:5]}{'*' * 24}{token[-8:]}"
            return _error(401, f"Incorrect API key provided: {shown}. Your key ends in "
                               f"{token[-8:]}.", "invalid_api_key")
        verdict = self._verdict(body)
        if mode == "malformed":
            content = "Well, on balance I think this response seems fine to me."
        elif mode == "fenced":
            content = f"Here is my assessment:\n```json\n{json.dumps(verdict, indent=2)}\n```\nDone."
        else:
            content = json.dumps(verdict)
        return web.json_response(_completion(model, content, body))

    def _verdict(self, body: dict[str, Any]) -> dict[str, Any]:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        text = _text(users[-1].get("content")) if users else ""
        blocks = _CANDIDATE.findall(text) or [("", text)]
        if len(blocks) > 1:
            clean = [cid for cid, t in blocks if self.marker not in t]
            winner = (clean or [blocks[0][0]])[0]
            return {"verdict": winner, "confidence": 0.8,
                    "critique": f"Candidate {winner} is the better answer.",
                    "violated_principles": []}
        if self.marker in blocks[0][1]:
            return {"verdict": "reject", "confidence": 0.9,
                    "critique": f"The response contains {self.marker} content.",
                    "violated_principles": [self.violation]}
        return {"verdict": "accept", "confidence": 0.85,
                "critique": "The response is helpful and harmless.", "violated_principles": []}


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _error(status: int, message: str, code: str) -> web.Response:
    err_type = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response(
        {"error": {"message": message, "type": err_type, "param": None, "code": code}},
        status=status)


def _completion(model: str, content: str, body: dict[str, Any]) -> dict[str, Any]:
    prompt_chars = sum(len(_text(m.get("content"))) for m in body.get("messages", []))
    prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(content) // 4)
    return {
        "id": f"chatcmpl-loop-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


@contextmanager
def loopback(script: Mapping[str, str] | None = None, **kwargs: Any) -> Iterator[LoopbackLLM]:
    """A started :class:`LoopbackLLM`, stopped on exit (the same as ``with LoopbackLLM(...)``).

    Example (a pytest fixture)::

        @pytest.fixture(scope="module")
        def srv():
            with loopback() as s:
                yield s
    """
    with LoopbackLLM(script, **kwargs) as srv:
        yield srv
