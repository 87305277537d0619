"""The FastAPI application of the service (the ingress of the Ray Serve deployment).

:func:`build_app` makes the app around a :class:`~consensus.service.runtime.Runtime`; the
deployment (:mod:`consensus.service.serve`) builds one per replica. Routes:

* ``POST /v1/consensus``: prompt + candidates -> the decision (see ``schemas.consensus_body``).
* ``POST /v1/chat/completions``: the OpenAI-compatible guardrail proxy (:mod:`.proxy`).
* ``GET /v1/panels``: the panels, their judges, strategies and policies, and what the caller's
  token may choose.
* The review queue (:mod:`consensus.review`; the reviewer is the bearer token's name):
  ``GET /v1/reviews`` (the queue: ``run_id``, ``status``, ``limit``), ``POST /v1/reviews/claim``
  (the next item, or a named one), ``GET /v1/reviews/{run_id}/{request_id}`` (an item's
  details), ``POST /v1/reviews/{run_id}/{request_id}`` (the verdict),
  ``POST /v1/reviews/{run_id}/{request_id}/release`` and ``POST /v1/reviews/undo`` (the
  reviewer's last review). 404: unknown item; 409: claimed by someone else (or not claimed).
* ``GET /healthz`` (the process answers), ``GET /readyz`` (panels and store ready),
  ``GET /metrics`` (Prometheus text), ``GET /openapi.json`` (the schema).

Every error is a JSON body in OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``, so the official client raises its own error classes; a body is never a traceback.
Bodies over ``limits.max_body_bytes`` are refused before they are read whole (413). With
tokens configured, every route but the health checks needs ``Authorization: Bearer``; no
token, key or header value is logged, stored or echoed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from consensus.service.auth import Tokens
from consensus.service.proxy import chat_completion, stream_events
from consensus.service.runtime import ApiError, Runtime
from consensus.service.schemas import (
    CandidateIn,
    ChatRequest,
    ClaimRequest,
    ConsensusRequest,
    ReleaseRequest,
    ReviewerIn,
    ReviewRequest,
    consensus_body,
    decision_of,
)
from consensus.types import Candidate
from consensus.types import Request as CRequest

log = structlog.get_logger("consensus.service")

ID_HEADER = "X-Consensus-Id"
DECISION_HEADER = "X-Consensus-Decision"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def error_response(status: int, message: str, *, kind: str = "invalid_request_error",
                   param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status, headers=headers)


def _field_message(exc: ValidationError | RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid body"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    # pydantic names union members (CandidateIn, str) in the path; the user wrote neither
    path = ".".join(p for p in loc if not p[:1].isupper() and p not in ("str",)) or None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"{path}: {first.get('msg', 'invalid')}{more}" if path
            else f"{first.get('msg', 'invalid body')}{more}"), path


def header_id(request: Request) -> str | None:
    """The ``X-Consensus-Id`` a client sent (its idempotency key), checked like a body id."""
    value = request.headers.get(ID_HEADER)
    if value is None:
        return None
    if not 0 < len(value) <= 200 or "/" in value or "\x00" in value:
        raise ApiError(400, f"{ID_HEADER} must be 1 to 200 characters without '/'",
                       param=ID_HEADER, code="invalid_id")
    return value


def build_app(runtime: Runtime, tokens: Tokens | None = None) -> FastAPI:
    """The app for one replica (see the module docstring)."""
    tokens = tokens or Tokens()
    limits = runtime.config.limits
    app = FastAPI(title="consensus", version="1", summary="Multi-agent consensus: a panel of "
                  "judges decides LLM outputs; an OpenAI-compatible guardrail proxy.")

    class Guard:
        """Body limit, bearer tokens and request metrics around every route. A plain ASGI
        middleware: ``@app.middleware("http")`` (Starlette's BaseHTTPMiddleware) runs each
        request in a task group with memory streams, about 0.5 ms per request."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.inner(scope, receive, send)
                return
            started = time.perf_counter()
            path: str = scope["path"]
            headers = Headers(scope=scope)
            declared = headers.get("content-length")
            principal = tokens.check(headers.get("authorization")) if tokens else None
            status = 500  # an exception that escapes the app (ServerErrorMiddleware answers)

            async def sending(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                if declared is not None and (not declared.isdigit()
                                             or int(declared) > limits.max_body_bytes):
                    await error_response(
                        413, f"the body is over the limit of {limits.max_body_bytes} bytes",
                        code="body_too_large")(scope, receive, sending)
                elif path not in OPEN_PATHS and tokens and principal is None:
                    await error_response(
                        401, "a valid bearer token is required (Authorization: Bearer "
                             "<token>)", kind="authentication_error", code="invalid_token",
                        headers={"WWW-Authenticate": "Bearer"})(scope, receive, sending)
                else:
                    scope.setdefault("state", {})["principal"] = principal
                    await until_disconnect(self.inner, scope, receive, sending,
                                           limits.max_body_bytes)
            finally:
                if path.startswith("/v1/"):
                    runtime.request_done(endpoint_of(path), status, started)

    app.add_middleware(Guard)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, kind=exc.kind, param=exc.param,
                              code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(400, "the body is not valid JSON", code="invalid_json")
        message, param = _field_message(exc)
        return error_response(400, message, param=param, code="invalid_field")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), code="http_error")

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.error("request_failed", error_type=type(exc).__name__)
        return error_response(500, f"internal error ({type(exc).__name__}); the request was "
                                   "not decided", kind="server_error", code="internal")

    async def body_of(request: Request, model: Any) -> Any:
        raw = await request.body()
        if len(raw) > limits.max_body_bytes:
            raise ApiError(413, f"the body is over the limit of {limits.max_body_bytes} bytes",
                           code="body_too_large")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            message, param = _field_message(exc)
            raise ApiError(400, message, param=param, code="invalid_field") from None

    async def bounded(coro: Any) -> Any:
        # the decision itself is bounded by request_timeout_s and fails closed on record
        # (Runtime.decide); this outer bound is a last resort (the store, the upstream)
        outer = limits.request_timeout_s * 2 + 10
        try:
            async with asyncio.timeout(outer):
                return await coro
        except TimeoutError:
            raise ApiError(504, f"no answer within {outer:g}s", kind="server_error",
                           code="timeout") from None

    @app.post("/v1/consensus", summary="Decide candidates with a panel",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ConsensusRequest.model_json_schema()}}}})
    async def decide(request: Request) -> JSONResponse:
        req: ConsensusRequest = await body_of(request, ConsensusRequest)
        if len(req.candidates) > limits.max_candidates:
            raise ApiError(400, f"{len(req.candidates)} candidates; at most "
                                f"{limits.max_candidates} per request", param="candidates",
                           code="too_many_candidates")
        choice = runtime.choose(request.state.principal, req.panel, req.strategy, req.policy)
        given = req.id or header_id(request)
        rid = given or uuid.uuid4().hex
        cands = [c if isinstance(c, CandidateIn) else CandidateIn(text=c)
                 for c in req.candidates]
        for text in [req.prompt, *(c.text for c in cands)]:
            if len(text) > limits.max_text_chars:
                raise ApiError(400, f"a text is over {limits.max_text_chars} characters",
                               code="text_too_long")
        try:
            creq = CRequest(id=rid, prompt=req.prompt, task=req.task, metadata=req.metadata,
                            candidates=tuple(Candidate(id=c.id or f"c{i + 1}", text=c.text,
                                                       generator=c.generator,
                                                       metadata=c.metadata)
                                             for i, c in enumerate(cands)))
        except ValidationError as exc:
            message, param = _field_message(exc)
            raise ApiError(400, message, param=param, code="invalid_field") from None
        recorded = await runtime.stored(choice, rid) if given else None
        if recorded is not None:
            outcome, replayed = recorded, True
        else:
            outcome, replayed = await bounded(runtime.decide(choice, creq))
        body = consensus_body(outcome, panel=choice.panel, policy=choice.policy,
                              strategy=choice.strategy, committed=True, replayed=replayed)
        return JSONResponse(body, headers={ID_HEADER: rid,
                                           DECISION_HEADER: decision_of(outcome)})

    @app.post("/v1/chat/completions", summary="OpenAI-compatible guardrail proxy",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ChatRequest.model_json_schema()}}}})
    async def chat(request: Request) -> Response:
        req: ChatRequest = await body_of(request, ChatRequest)
        body, _, decision = await bounded(chat_completion(
            runtime, req, request.state.principal, header_id(request)))
        headers = {ID_HEADER: body["consensus"]["id"], DECISION_HEADER: decision}
        if req.stream:  # decided already: the stream carries only what was delivered
            return StreamingResponse(stream_events(body, include_usage=req.include_usage()),
                                     media_type="text/event-stream", headers=headers)
        return JSONResponse(body, headers=headers)

    @app.get("/v1/panels", summary="The panels a caller may use")
    async def panels(request: Request) -> dict[str, Any]:
        cfg = runtime.config
        principal = request.state.principal
        acc = cfg.access.get(principal) if principal is not None else None
        out = []
        for name, served in cfg.panels.items():
            if acc is not None and acc.panels is not None and name not in acc.panels:
                continue
            sc = served.scenario
            out.append({"name": name, "default": name == cfg.default_panel,
                        "judges": [{"name": j.name, "kind": j.kind,
                                    "family": j.model_family()} for j in sc.judges],
                        "strategy": sc.strategy.name,
                        "quorum": sc.file.policy.quorum,
                        "screen_input": sc.file.policy.screen_input})
        policies = [p for p in cfg.policy_names()
                    if acc is None or acc.policies is None or p in acc.policies]
        return {"panels": out, "policies": policies, "upstream": (
            cfg.upstream.model if cfg.upstream else None)}

    # ------------------------------------------------------------------ the review queue
    async def optional_body(request: Request, model: Any) -> Any:
        raw = await request.body()
        return model() if not raw.strip() else await body_of(request, model)

    def reviewer_of(request: Request, body: ReviewerIn) -> str:
        principal = request.state.principal
        if principal is None:  # a service without tokens (loopback only)
            return body.reviewer or "local"
        if body.reviewer is not None and body.reviewer != principal:
            raise ApiError(403, "the reviewer is the bearer token's name; leave reviewer out",
                           kind="permission_error", param="reviewer")
        return str(principal)

    def review_runs(request: Request, run_id: str | None = None) -> list[str] | None:
        """The runs whose items this token may review: those of the panels its ``access``
        allows (None: every run in the store). Naming another run is a 403: an item holds a
        prompt and candidates the token could not ask for."""
        cfg = runtime.config
        principal = request.state.principal
        acc = cfg.access.get(principal) if principal is not None else None
        if acc is None or acc.panels is None:
            return None
        runs = [cfg.panels[p].run_id for p in acc.panels if p in cfg.panels]
        if run_id is not None and run_id not in runs:
            raise ApiError(403, f"this token may not review items of run {run_id!r}",
                           kind="permission_error", param="run_id")
        return runs

    @app.get("/v1/reviews", summary="The review queue, most urgent first")
    async def review_queue(request: Request, run_id: str | None = None,
                           status: str = "pending", limit: int = 100) -> dict[str, Any]:
        runs = review_runs(request, run_id)
        if runs is None or run_id is not None:
            return {"items": await runtime.review("list", run_id, status, limit)}
        items = [i for r in runs for i in await runtime.review("list", r, status, limit)]
        items.sort(key=lambda i: -int(i["priority"]))  # stable: each run's order kept
        return {"items": items[:limit]}

    @app.post("/v1/reviews/claim", summary="Claim the next item (or a named one)")
    async def review_claim(request: Request) -> dict[str, Any]:
        body: ClaimRequest = await optional_body(request, ClaimRequest)
        who = reviewer_of(request, body)
        runs = review_runs(request, body.run_id)
        if runs is None or body.run_id is not None:
            item = await runtime.review("claim", who, body.run_id, body.request_id)
            return {"reviewer": who, "item": item}
        if body.request_id is not None:
            raise ApiError(400, "name the run_id of the request to claim", param="run_id")
        urgency = {}  # the allowed run with the most urgent pending item is tried first
        for run in runs:
            top = await runtime.review("list", run, "pending", 1)
            urgency[run] = int(top[0]["priority"]) if top else -1
        item = None
        for run in sorted(runs, key=lambda r: -urgency[r]):
            item = await runtime.review("claim", who, run, None)
            if item is not None:
                break
        return {"reviewer": who, "item": item}

    @app.post("/v1/reviews/undo", summary="Undo the reviewer's last review")
    async def review_undo(request: Request) -> dict[str, Any]:
        body: ReleaseRequest = await optional_body(request, ReleaseRequest)
        who = reviewer_of(request, body)
        return {"reviewer": who, "undone": await runtime.review("undo", who)}

    @app.get("/v1/reviews/{run_id}/{request_id}", summary="One item's details")
    async def review_item(run_id: str, request_id: str, request: Request) -> dict[str, Any]:
        review_runs(request, run_id)
        return {"item": await runtime.review("details", run_id, request_id)}

    @app.post("/v1/reviews/{run_id}/{request_id}", summary="Submit a review of a claimed item",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ReviewRequest.model_json_schema()}}}})
    async def review_submit(run_id: str, request_id: str, request: Request) -> dict[str, Any]:
        review_runs(request, run_id)
        body: ReviewRequest = await body_of(request, ReviewRequest)
        who = reviewer_of(request, body)
        review_id = await runtime.review("submit", run_id, request_id, who, body.verdict,
                                         chosen=body.chosen, revision=body.revision,
                                         note=body.note)
        return {"review_id": review_id, "reviewer": who, "run_id": run_id,
                "request_id": request_id, "verdict": body.verdict, "status": "reviewed"}

    @app.post("/v1/reviews/{run_id}/{request_id}/release", summary="Give a claimed item back")
    async def review_release(run_id: str, request_id: str, request: Request) -> dict[str, Any]:
        review_runs(request, run_id)
        body: ReleaseRequest = await optional_body(request, ReleaseRequest)
        who = reviewer_of(request, body)
        await runtime.review("release", run_id, request_id, who)
        return {"reviewer": who, "run_id": run_id, "request_id": request_id,
                "status": "pending"}

    @app.get("/healthz", summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Panels started and the store open")
    async def readyz() -> dict[str, Any]:
        return {"status": "ready", **await runtime.ready()}

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        if runtime.hub is None:
            return Response(b"", media_type="text/plain; version=0.0.4")
        runtime.flush()  # this replica's queued events first (an actor runs calls in order)
        text = await runtime.hub.exposition.remote()
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def endpoint_of(path: str) -> str:
    """The metrics label of a path: an item's review routes share one label (their ids would
    make a label per item)."""
    if path.startswith("/v1/reviews/") and path.count("/") >= 4:
        return ("/v1/reviews/{run_id}/{request_id}/release" if path.endswith("/release")
                else "/v1/reviews/{run_id}/{request_id}")
    return path


async def until_disconnect(app: Any, scope: Any, receive: Any, send: Any,
                           max_bytes: int) -> None:
    """Run ``app`` and cancel it when the client goes away (its judge and upstream calls are
    cancelled with it). The body is read first (at most ``max_bytes``, else a 413); the app
    then gets it replayed, and a watcher reads on for ``http.disconnect``. Serve's own proxy
    cancels a request whose client left, but an ingress that talks to the replica directly
    (uvicorn, as with Serve's HAProxy ingress) only reports the disconnect to a reader of
    ``receive``."""
    body: list[Any] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # gone before the body arrived: nothing to decide
        body.append(message)
        size += len(message.get("body", b""))
        if size > max_bytes:  # a chunked body without content-length, over the limit
            await error_response(413, f"the body is over the limit of {max_bytes} bytes",
                                 code="body_too_large")(scope, receive, send)
            return
        if not message.get("more_body"):
            break
    gone = asyncio.Event()

    async def replay() -> Any:
        if body:
            return body.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    task = asyncio.ensure_future(app(scope, replay, send))

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        await task
    except asyncio.CancelledError:
        if not gone.is_set():
            raise  # cancelled from outside (Serve's own disconnect handling, shutdown)
    finally:
        watcher.cancel()
