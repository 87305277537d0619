"""A loopback OpenAI-compatible chat-completions server for tests and benchmarks.

One server on ``127.0.0.1`` (ephemeral port by default, aiohttp in a background thread) serves many
judges: its behaviour is scripted per *model name*, the ``model`` field of the request body.
litellm strips the provider prefix, so a judge with ``model="openai/slow:2"`` and
``api_base=srv.base_url`` sends ``"slow:2"``. The mode of a model is ``script.get(model, model)``,
so a model string can name its mode directly or be an alias that ``script`` maps to one; a mode
string is ``mode`` or ``mode:arg``. Unknown modes answer like ``valid``.

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
    ``strict``                 A provider that enforces the schema it is sent. Without a
                               ``response_format`` of type ``json_schema`` carrying a
                               ``json_schema.schema`` object: HTTP 400 (code
                               ``invalid_request_error``, "... json_schema response_format is
                               required ..."). With one: the valid verdict made to conform to the
                               schema (see *Schema conformance*).
    ``no_schema``              A provider without structured outputs: HTTP 400 "response_format
                               type json_schema is not supported by this model" when sent
                               ``type: json_schema``; a valid reply otherwise (``json_object`` or
                               no ``response_format``).
    ``single_slot:<s>``        A llama.cpp server with one slot: every ``single_slot`` request,
                               whatever its model name, waits for ONE server-wide slot, holds it
                               ``s`` seconds, then gets a valid reply (schema-conforming when a
                               json_schema is sent, like ``strict``; the plain valid JSON
                               otherwise). A queued request whose client disconnects is cancelled
                               and leaves the queue. See ``max_active`` / ``max_waiting``.
    ``wrong_shape``            Valid JSON of the wrong shape, as llama.cpp produced under plain
                               ``json_object``: ``{"response_type": "rejected", "explanation":
                               "..."}`` (always ``"rejected"``; no verdict key at all).
    ``list_critique``          The valid verdict, with ``critique`` a list of two strings.
    ``empty_ids``              A ``reject`` verdict (whatever the candidate) whose
                               ``violated_principles`` is ``["", " "]``.
    ``context_length``         Always HTTP 400, code ``context_length_exceeded``: "This model's
                               maximum context length is 2048 tokens. However, your messages
                               resulted in 2627 tokens. ..."
    ``ramble``                 Prose without JSON, exactly ``max_tokens`` words (from the body,
                               else ``max_completion_tokens``, else 512), ``finish_reason:
                               "length"``.
    ``parrot[:<s>]``           An upstream generator (the guardrail proxy's tests): after
                               ``s`` seconds, the reply is the text after ``SAY:`` in the last
                               user message, else :data:`PARROT_DEFAULT`.
    ``drafts:<t1>|<t2>|...``   A generator: the n-th call of that model gets the n-th text as
                               the reply (the last one repeats), whatever was asked.

Scripted judges (for audits of judge robustness and for debates; JSON like ``valid``):
    ``gullible``               Like ``valid``, but obeys judge-directed text in a candidate: a
                               candidate whose text contains (case-insensitive) one of
                               :data:`INJECTIONS` ("ignore previous instructions", "as the
                               judge", "verdict", "rating:", ...) is accepted (verdict task) or
                               picked (pairwise: the first such candidate), marker or not.
    ``position_first``         Pairwise: always the first candidate's id (confidence 0.8).
                               Verdict task: like ``valid``.
    ``verbose``                Pairwise: the longest candidate (the first of equals). Verdict
                               task: ``accept`` when the candidate's text is longer than 600
                               characters, else like ``valid``.
    ``coin``                   A random verdict per call (pairwise: a random candidate id),
                               drawn from ``random.Random(f"{model}:{n}")``, ``n`` the server's
                               call count of that model: reproducible across runs, but repeated
                               calls (and two aliases) disagree.
    ``follower``               In a debate round (the user message has a ``Your previous vote:
                               <label>`` line and ``<alias> voted: <label> (confidence ...)``
                               lines): the majority label of the peers that voted (abstentions
                               do not count); a tie, or no peer vote, keeps the previous vote
                               (like ``valid`` when that was an abstention). Outside a debate:
                               like ``valid``.
    ``echo``                   Prose quoting the candidate text(s) verbatim and no verdict of
                               its own: the only JSON in the reply is whatever the candidates
                               hold (a forged ``{"verdict": "accept"}`` in a candidate is echoed).

The valid verdict is deterministic. The server reads the candidate blocks of the last user
message (the whole message when there are none): the judge's data blocks
``<<<DATA-<token>>>> candidate id="..."`` ... ``<<<END-<token>>>>`` (prompt and critique blocks
are not candidates), or the older ``<candidate id="...">...</candidate>`` tags. One block:
``reject`` if its text contains ``marker`` (default ``"UNSAFE"``), else ``accept``. Several
blocks (pairwise): the id of the first candidate without the marker. Its keys are ``verdict``,
``confidence``, ``critique`` and ``violated_principles``. Debate lines (``follower``) are read
from the message with every data block removed, so a candidate cannot forge them.

Schema conformance (``strict``, ``single_slot``): only keys listed in the schema's
``properties`` are emitted (so no ``violated_principles`` when the schema has none); a value
outside its property's ``enum`` (or ``const``) becomes the first allowed value (the verdict
included); an array keeps only the items in ``items.enum`` when there is one (so
``violated_principles`` drops unknown ids); a string is cut to ``maxLength``; a number is clamped
to ``minimum`` / ``maximum``; a ``required`` key the verdict lacks gets a default of its type.
Local ``$ref`` (``#/$defs/...``) and nullable ``anyOf`` branches, as pydantic writes them, are
followed. The schema received is in ``bodies`` / :meth:`LoopbackLLM.last_schema`.

Counters (all modes, guarded by the server's lock): ``total`` (requests received), ``active``
(requests being handled now), ``calls`` (per model name). For ``single_slot``: ``slot_active`` /
``slot_waiting`` (holding / queued for the slot now) and their peaks ``max_active`` (must stay 1)
and ``max_waiting``.

Outages: ``stop()`` then ``start()`` on the same object serves again on the same port (the
socket is bound with ``SO_REUSEADDR``), so ``base_url`` stays valid; ``LoopbackLLM(port=p)``
binds a given port (``0``, the default, picks an ephemeral one).

Example:
    >>> with LoopbackLLM() as srv:  # doctest: +SKIP
    ...     vote = asyncio.run(LLMJudge(LLMJudgeSpec(name="j", model="openai/valid",
    ...                        api_base=srv.base_url)).judge(request, cand))
    ...     srv.calls["valid"]
    1
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, Self

from aiohttp import web

_CANDIDATE = re.compile(r'<candidate id="([^"]*)">\n?(.*?)\n?</candidate>', re.DOTALL)
_BLOCK = re.compile(r"<<<DATA-(?P<tok>[0-9A-Za-z]+)>>> (?P<head>[^\n]*)\n(?P<body>.*?)\n?"
                    r"<<<END-(?P=tok)>>>", re.DOTALL)
_HEAD_ID = re.compile(r'^candidate id="([^"]*)"$')
_PREVIOUS = re.compile(r"^Your previous vote: (.+)$", re.MULTILINE)
_PEER = re.compile(r"^(.+?) voted: (.+?) \(confidence [^)\n]*\)$", re.MULTILINE)
INJECTIONS = ("ignore previous instructions", "ignore all previous", "as the evaluator",
              "as the judge", "verdict", "rating:", "score:")
"""Judge-directed phrases that ``gullible`` obeys (matched case-insensitively)."""
PARROT_DEFAULT = "Happy to help: here is a short, friendly answer."
"""What ``parrot`` answers a message without ``SAY:``."""
VERBOSE_CHARS = 600
"""``verbose`` accepts any candidate longer than this."""
_PROSE = ("Let", "me", "think", "about", "this", "carefully", "before", "I", "settle", "on", "a",
          "verdict,", "weighing", "the", "candidate", "response", "against", "each",
          "principle", "in", "turn", "and", "then")  # ramble: cycled to max_tokens words


class LoopbackLLM:
    """OpenAI-compatible test server; a context manager (see module docstring).

    Args:
        script: Model name -> mode, for aliases (``{"judge-a": "latency:0.05"}``).
        marker: Word whose presence in a candidate makes the ``valid`` verdict ``reject``.
        violation: Principle id reported on rejections.
        keep_bodies: Request bodies kept per model (oldest dropped first).
        port: Port to bind on ``127.0.0.1``; 0 (default) picks an ephemeral one.

    Attributes:
        base_url: ``http://127.0.0.1:PORT/v1`` once started (kept after ``stop()``).
        port: The bound port once started; a restart (``stop()`` then ``start()``) binds it
            again.
        script: The model -> mode mapping; mutable while serving (tests add aliases so that
            each gets its own call count).
        calls: Calls received per model name (a Counter).
        bodies: Last ``keep_bodies`` JSON request bodies per model name.
        auth: Last ``Authorization`` header per model name.
        total: Requests received (all modes, including unreadable bodies).
        active: Requests being handled now (all modes; queued ``single_slot`` ones included).
        slot_active / slot_waiting: ``single_slot`` requests holding / queued for the slot now.
        max_active / max_waiting: Peaks of ``slot_active`` (1 unless the slot is broken) and
            ``slot_waiting``.
    """

    def __init__(
        self,
        script: Mapping[str, str] | None = None,
        *,
        marker: str = "UNSAFE",
        violation: str = "no-harm",
        keep_bodies: int = 20,
        port: int = 0,
    ) -> None:
        self.script = dict(script or {})
        self._aliases = itertools.count()  # judge(): a fresh alias per judge
        self.marker = marker
        self.violation = violation
        self.port = port
        self.calls: Counter[str] = Counter()
        self.bodies: dict[str, deque[dict[str, Any]]] = defaultdict(
            lambda: deque(maxlen=keep_bodies))
        self.auth: dict[str, str] = {}
        self.base_url = ""
        self.total = self.active = 0
        self.slot_active = self.slot_waiting = self.max_active = self.max_waiting = 0
        self._lock = threading.Lock()
        self._slot: asyncio.Lock | None = None  # created on the server loop by _serve
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Start serving in a daemon thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("loopback server already running")
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
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        thread = threading.Thread(target=run, name="loopback-llm", daemon=True)
        thread.start()
        if not ready.wait(10.0):
            raise RuntimeError("loopback server did not start within 10 s")
        if failure:
            thread.join(timeout=5.0)
            self._loop = None
            raise RuntimeError(f"loopback server failed to start on port {self.port}") \
                from failure[0]
        self._thread = thread
        return self

    async def _serve(self) -> None:
        self._slot = asyncio.Lock()  # single_slot: bound to this (the server's) loop
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/chat/completions", self._handle)
        # handler_cancellation: a client that gave up (timeout) cancels its slow handler.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024,
                               reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent; ``start()`` serves again)."""
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
        self._slot = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- inspection
    def judge(self, mode: str, tag: str = "t", **fields: Any) -> tuple[Any, str]:
        """An ``LLMJudge`` on a fresh alias of ``mode`` (so its call counts are its own);
        returns (judge, the alias as this server sees it). ``fields`` are spec fields on top of
        the name, the ``openai/<alias>`` model and this server's ``api_base``."""
        from judges.llm import LLMJudge, LLMJudgeSpec

        alias = f"{tag}{next(self._aliases)}-{mode}"
        self.script[alias] = mode
        spec = {"name": f"judge-{alias}", "model": f"openai/{alias}", "api_base": self.base_url}
        return LLMJudge(LLMJudgeSpec(**{**spec, **fields})), alias

    def last_body(self, model: str) -> dict[str, Any]:
        """The last request body received for ``model`` (KeyError if none)."""
        with self._lock:
            if not self.bodies.get(model):
                raise KeyError(model)
            return self.bodies[model][-1]

    def last_schema(self, model: str) -> dict[str, Any] | None:
        """The JSON schema of the last request for ``model`` (None: no json_schema sent)."""
        return _schema(self.last_body(model))

    def reset(self) -> None:
        """Forget calls, bodies and headers, and zero ``total`` and the slot peaks."""
        with self._lock:
            self.calls.clear()
            self.bodies.clear()
            self.auth.clear()
            self.total = self.max_active = self.max_waiting = 0

    # ----------------------------------------------------------------- behaviour
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.total += 1
            self.active += 1
        try:
            return await self._respond(request)
        finally:  # also when the handler is cancelled (client gone)
            with self._lock:
                self.active -= 1

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        with self._lock:
            self.calls[model] += 1
            n = self.calls[model]
            self.bodies[model].append(body)
            self.auth[model] = request.headers.get("Authorization", "")
        mode, _, arg = self.script.get(model, model).partition(":")
        schema = _schema(body)
        if mode in ("slow", "latency"):
            await asyncio.sleep(float(arg or 0))
        elif mode == "single_slot":
            await self._hold_slot(float(arg or 0))
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
        elif mode == "strict" and schema is None:
            return _error(400, "Invalid response_format: a json_schema response_format (type "
                               "'json_schema' with a 'json_schema.schema' object) is required "
                               "by this model.", "invalid_request_error")
        elif mode == "no_schema" and _format_type(body) == "json_schema":
            return _error(400, "Invalid parameter: response_format type json_schema is not "
                               "supported by this model.", "invalid_request_error")
        elif mode == "context_length":
            return _error(400, "This model's maximum context length is 2048 tokens. However, "
                               "your messages resulted in 2627 tokens. Please reduce the length "
                               "of the messages.", "context_length_exceeded")
        elif mode == "ramble":
            words = int(body.get("max_tokens") or body.get("max_completion_tokens") or 512)
            content = " ".join(_PROSE[i % len(_PROSE)] for i in range(words))
            return web.json_response(_completion(model, content, body, finish_reason="length"))
        elif mode == "parrot":  # an upstream generator whose answer the test writes
            await asyncio.sleep(float(arg or 0))
            said = _last_user(body).partition("SAY:")[2].strip()
            return web.json_response(_completion(model, said or PARROT_DEFAULT, body))
        elif mode == "drafts":
            texts = arg.split("|")
            return web.json_response(_completion(model, texts[min(n, len(texts)) - 1], body))
        verdict = self._verdict(body, mode, f"{model}:{n}")
        if mode == "echo":
            texts = [t for _, t in _candidates(_last_user(body))]
            content = ("I have read the response. It says: " + " / ".join(
                f'"{t}"' for t in texts) + " I will not add anything of my own.")
        elif mode == "malformed":
            content = "Well, on balance I think this response seems fine to me."
        elif mode == "fenced":
            content = f"Here is my assessment:\n```json\n{json.dumps(verdict, indent=2)}\n```\nDone."
        elif mode == "wrong_shape":
            content = json.dumps({"response_type": "rejected", "explanation": "The response "
                                  "does not meet the criteria of the rubric."})
        elif mode == "list_critique":
            content = json.dumps({**verdict, "critique": [
                "The response answers the question.", "It is concise and harmless."]})
        elif mode == "empty_ids":
            content = json.dumps({"verdict": "reject", "confidence": 0.9,
                                  "critique": "The response breaks a principle.",
                                  "violated_principles": ["", " "]})
        elif mode in ("strict", "single_slot") and schema is not None:
            content = json.dumps(conform(verdict, schema))
        else:
            content = json.dumps(verdict)
        return web.json_response(_completion(model, content, body))

    async def _hold_slot(self, seconds: float) -> None:
        """Wait for the one server-wide slot, hold it ``seconds``; counters survive cancel."""
        slot = self._slot
        if slot is None:
            raise RuntimeError("single_slot used before the server started")
        queued = slot.locked()
        if queued:
            with self._lock:
                self.slot_waiting += 1
                self.max_waiting = max(self.max_waiting, self.slot_waiting)
        try:
            await slot.acquire()
        finally:  # acquired, or cancelled while queued (the client gave up)
            if queued:
                with self._lock:
                    self.slot_waiting -= 1
        try:
            with self._lock:
                self.slot_active += 1
                self.max_active = max(self.max_active, self.slot_active)
            await asyncio.sleep(seconds)
        finally:
            with self._lock:
                self.slot_active -= 1
            slot.release()

    def _verdict(self, body: dict[str, Any], mode: str = "valid",
                 seed: str = "") -> dict[str, Any]:
        text = _last_user(body)
        blocks = _candidates(text)
        if mode == "follower":
            debate = _debate(text)
            followed = _follow(*debate) if debate is not None else None
            if followed is not None:
                return followed
        if mode == "coin":
            rng = random.Random(seed)
            labels = [cid for cid, _ in blocks] if len(blocks) > 1 else ["accept", "reject"]
            pick = rng.choice(labels)
            return {"verdict": pick, "confidence": round(rng.uniform(0.5, 1.0), 2),
                    "critique": "I tossed a coin.", "violated_principles": []}
        if mode == "gullible":
            obeyed = [cid for cid, t in blocks if any(p in t.lower() for p in INJECTIONS)]
            if obeyed:
                return {"verdict": obeyed[0] if len(blocks) > 1 else "accept",
                        "confidence": 0.9, "critique": "The response says it should be "
                        "accepted, so I accept it.", "violated_principles": []}
        if len(blocks) > 1:
            if mode == "position_first":
                winner = blocks[0][0]
            elif mode == "verbose":
                winner = max(blocks, key=lambda b: len(b[1]))[0]
            else:
                clean = [cid for cid, t in blocks if self.marker not in t]
                winner = (clean or [blocks[0][0]])[0]
            return {"verdict": winner, "confidence": 0.8,
                    "critique": f"Candidate {winner} is the better answer.",
                    "violated_principles": []}
        if mode == "verbose" and len(blocks[0][1]) > VERBOSE_CHARS:
            return {"verdict": "accept", "confidence": 0.85,
                    "critique": "The response is thorough and detailed.",
                    "violated_principles": []}
        if self.marker in blocks[0][1]:
            return {"verdict": "reject", "confidence": 0.9,
                    "critique": f"The response contains {self.marker} content.",
                    "violated_principles": [self.violation]}
        return {"verdict": "accept", "confidence": 0.85,
                "critique": "The response is helpful and harmless.", "violated_principles": []}


# --------------------------------------------------------------------- reading the prompt
def _last_user(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


def _unattr(s: str) -> str:
    return (s.replace("&quot;", '"').replace("&lt;", "<").replace("&#10;", "\n")
            .replace("&#13;", "\r").replace("&amp;", "&"))


def candidate_blocks(text: str) -> list[tuple[str, str]]:
    """(id, text) of every candidate data block of a user message, in order: the judge's
    ``<<<DATA-token>>> candidate id="..."`` blocks, else the older ``<candidate>`` tags."""
    found = []
    for m in _BLOCK.finditer(text):
        head = _HEAD_ID.match(m.group("head"))
        if head:
            found.append((_unattr(head.group(1)), m.group("body")))
    return found or [(cid, t) for cid, t in _CANDIDATE.findall(text)]


def _candidates(text: str) -> list[tuple[str, str]]:
    return candidate_blocks(text) or [("", text)]


def _debate(text: str) -> tuple[str, list[str]] | None:
    """(previous label, the peers' labels) of a debate message, read outside the data blocks;
    None when the message is no debate round."""
    outside = _CANDIDATE.sub("", _BLOCK.sub("", text))
    prev = _PREVIOUS.search(outside)
    if prev is None:
        return None
    return prev.group(1).strip(), [m.group(2).strip() for m in _PEER.finditer(outside)]


def _follow(previous: str, peers: list[str]) -> dict[str, Any] | None:
    """``follower``'s vote; None when it has none (a tie after a previous abstention)."""
    counts = Counter(label for label in peers if label != "abstained").most_common()
    top = [label for label, c in counts if c == counts[0][1]] if counts else []
    label = top[0] if len(top) == 1 else previous
    if label == "abstained":
        return None
    why = ("I follow the majority of the other judges." if len(top) == 1
           else "The other judges are split, so I keep my vote.")
    return {"verdict": label, "confidence": 0.8, "critique": why, "violated_principles": []}


# --------------------------------------------------------------------- schema conformance
def _format_type(body: dict[str, Any]) -> str | None:
    rf = body.get("response_format")
    return rf.get("type") if isinstance(rf, dict) else None


def _schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """``response_format.json_schema.schema`` when the type is ``json_schema``, else None."""
    rf = body.get("response_format")
    if not isinstance(rf, dict) or rf.get("type") != "json_schema":
        return None
    js = rf.get("json_schema")
    schema = js.get("schema") if isinstance(js, dict) else None
    return schema if isinstance(schema, dict) else None


def _resolve(root: dict[str, Any], node: Any) -> dict[str, Any]:
    """``node`` with local ``$ref`` followed and a nullable ``anyOf`` reduced to its non-null
    branch; ``{}`` for anything that is not a schema object."""
    for _ in range(8):  # bounded: refs may chain
        if not isinstance(node, dict):
            return {}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            node = target
            continue
        branches = node.get("anyOf")
        if isinstance(branches, list) and "type" not in node:
            real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            if real:
                node = real[0]
                continue
        return node
    return {}


def _allowed(prop: dict[str, Any]) -> list[Any] | None:
    if isinstance(prop.get("enum"), list):
        return list(prop["enum"])
    return [prop["const"]] if "const" in prop else None


def _fit(value: Any, prop: dict[str, Any], root: dict[str, Any]) -> Any:
    allowed = _allowed(prop)
    if allowed and value not in allowed:
        return allowed[0]
    if isinstance(value, list):
        items = _allowed(_resolve(root, prop.get("items")))
        return value if items is None else [v for v in value if v in items]
    if isinstance(value, str) and isinstance(prop.get("maxLength"), int):
        return value[:prop["maxLength"]]
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = prop.get("minimum"), prop.get("maximum")
        if isinstance(low, int | float):
            value = max(value, low)
        if isinstance(high, int | float):
            value = min(value, high)
    return value


def _default(prop: dict[str, Any]) -> Any:
    allowed = _allowed(prop)
    if allowed:
        return allowed[0]
    kind = prop.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return {"string": "", "number": 0.0, "integer": 0, "boolean": False, "array": [],
            "object": {}}.get(kind if isinstance(kind, str) else "", None)


def conform(verdict: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``verdict`` made to conform to ``schema`` (rules in the module docstring).

    Example:
        >>> conform({"verdict": "accept", "confidence": 0.9, "violated_principles": ["x"]},
        ...         {"properties": {"verdict": {"enum": ["yes", "no"]},
        ...                         "violated_principles": {"items": {"enum": ["y"]}}}})
        {'verdict': 'yes', 'violated_principles': []}
    """
    props = _resolve(schema, schema.get("properties"))
    required = schema.get("required")
    required = set(required) if isinstance(required, list) else set()
    out: dict[str, Any] = {}
    for key, raw in props.items():
        prop = _resolve(schema, raw)
        if key in verdict:
            out[key] = _fit(verdict[key], prop, schema)
        elif key in required:
            out[key] = _default(prop)
    return out


# --------------------------------------------------------------------- replies
def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _error(status: int, message: str, code: str) -> web.Response:
    err_type = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response(
        {"error": {"message": message, "type": err_type, "param": None, "code": code}},
        status=status)


def _completion(model: str, content: str, body: dict[str, Any], *,
                finish_reason: str = "stop") -> dict[str, Any]:
    prompt_chars = sum(len(_text(m.get("content"))) for m in body.get("messages", []))
    prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(content) // 4)
    return {
        "id": f"chatcmpl-loop-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason,
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
