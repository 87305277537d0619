"""The HTTP service (``consensus serve``) against the in-process Python API, in one Ray session.

A loopback OpenAI-compatible server (``tests/loopback.py``) runs in a process of its own: every
LLM judge answers after a fixed latency (model ``latency:<s>``) and the proxy's upstream is
``parrot:<u>`` (the text after ``SAY:``, after ``u`` seconds). Two services are started with
``start_service``, one after the other on the same port, each with an SQLite store in a temp dir:

* ``llm5``: five LLM judges on the loopback server (one shared async host actor, as
  ``consensus serve`` starts them; ``endpoint_max_in_flight`` 1000) and the upstream;
* ``safety_smoke``: ``scenarios/safety_smoke.yaml`` as ``consensus serve`` reads it (rules +
  factuality; its LLM judges stay disabled: the provider keys are removed from this process's
  environment before Ray starts, so nothing leaves the machine).

The in-process baseline is the Python API on the *same* judge hosts (``svc.panels[name]``, so
the very actors the service uses): ``Coordinator(panel, strategy, policy).decide(request)`` in
this driver's event loop. Every path is warmed up first; the sides alternate in ABBA rounds and
ratios are taken within a round (the 2-core machine is shared), reported as the median of the
paired rounds. Phases:

1. sequential (one request at a time): POST /v1/consensus (without and with a request ``id``,
   which adds the store's idempotency look-up), the same app in this process through httpx's
   ASGI transport (no Serve: what the app itself costs) and GET /healthz (the floor of the
   HTTP path: client -> Serve proxy -> replica -> FastAPI and back) against ``decide``;
2. saturation (``--in-flight`` requests at once, aiohttp client): decisions/s over HTTP against
   ``Coordinator.run(requests, concurrency=in_flight)``, and the CPU per decision of each
   process (this driver, Serve proxy, replica, judge host, loopback server, the rest of Ray);
3. the offline panel, sequential, HTTP against ``decide``;
4. the proxy: POST /v1/chat/completions; overhead = total - ``upstream_latency_ms`` - the
   slowest vote's ``latency_ms`` (what the decision waited for);
5. memory of the Ray session: PSS and RSS of every process the session started (this driver's
   descendants, the loopback server's excepted; the driver itself apart), after the warm-up and
   after the loaded phases, the larger kept.

Then where the ms go: means of sequential requests split by the service's own
``request_latency_seconds`` (time inside the app) and the decision's ``latency_ms``; the app's
store and metric calls timed in this process; and a few of the app's own steps timed here
(store commit, request parse, response JSON). No figure is asserted.

Usage::

    .venv/bin/python benchmarks/service.py [--quick] [--json] [--latency 0.05]
        [--upstream-latency 0.05] [--in-flight 64] [--rounds 4] [--replicas 1]
        [--serve-env NAME=VALUE ...] [--haproxy]   # Ray Serve settings: experiments

With ``--json`` the progress and the table go to stderr and one JSON document to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY")
OUT = sys.stdout  # where the human-readable output goes (stderr with --json)


def say(*parts: Any) -> None:
    print(*parts, file=OUT, flush=True)


# ------------------------------------------------------------------ loopback server process
def _serve(conn: Any, stop: Any) -> None:
    """Child process: run the loopback server until ``stop`` is set; send its URL first."""
    sys.path.insert(0, str(ROOT))
    from tests.loopback import LoopbackLLM

    with LoopbackLLM() as srv:
        conn.send(srv.base_url)
        stop.wait()
        conn.send(srv.total)


class ServerProcess:
    """The loopback server in its own (spawned) process, so its CPU is not the driver's."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_serve, args=(child, self._stop), name="loopback-llm",
                                 daemon=True)
        self.base_url, self.pid, self.total = "", 0, 0

    def __enter__(self) -> Self:
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("the loopback server did not report its URL within 60 s")
        self.base_url, self.pid = self._conn.recv(), self._proc.pid or 0
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._conn.poll(10):
            self.total = self._conn.recv()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()


# ------------------------------------------------------------------ processes: CPU and memory
def role_of(proc: Any) -> str:
    """A Ray process's role from its title (``ray::ServeReplica:...``) or command line."""
    try:
        cmd = proc.cmdline()
    except Exception:  # noqa: BLE001 - a process that just ended
        return "gone"
    first = cmd[0] if cmd else ""
    if first.startswith("ray::"):
        title = first[5:].split()[0]
        return title.split(".")[0].split(":")[0]  # ServeReplica:consensus:ingress -> ServeReplica
    joined = " ".join(cmd)
    for key, name in (("multiprocessing", "multiprocessing"),  # the loopback's resource tracker
                      ("gcs_server", "gcs_server"), ("raylet", "raylet"),
                      ("dashboard/agent.py", "dashboard agent"), ("dashboard.py", "dashboard"),
                      ("log_monitor.py", "log_monitor"), ("monitor.py", "autoscaler monitor"),
                      ("runtime_env", "runtime env agent")):
        if key in joined:
            return name
    return Path(first).name or proc.name()


# the service runs with a bearer token, as one that listens beyond loopback must (and as
# Serve's HAProxy ingress requires): its check is part of what HTTP costs
TOKEN = secrets.token_hex(16)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


CPU_GROUPS = {"ServeReplica": "replica", "ProxyActor": "Serve proxy", "haproxy": "Serve proxy",
              "HAProxyManager": "Serve proxy", "JudgeHost": "judge host"}
IN_APP = re.compile(r'consensus_request_latency_seconds_(?P<kind>sum|count)\{endpoint="'
                    r'(?P<endpoint>[^"]+)"\} (?P<value>\S+)$')


class Processes:
    """This driver's descendants (the Ray session) but the loopback server's process tree."""

    def __init__(self, server_pid: int, session_dir: str):
        import psutil  # type: ignore[import-untyped]

        self.psutil = psutil
        self.me = psutil.Process()
        self.server_pid = server_pid
        self.session_dir = session_dir

    def session(self) -> list[Any]:
        skip = {self.server_pid}
        try:
            skip |= {c.pid for c in self.psutil.Process(self.server_pid).children(recursive=True)}
        except self.psutil.Error:
            pass
        mine = [p for p in self.me.children(recursive=True)
                if p.pid not in skip and role_of(p) not in ("gone", "multiprocessing")]
        pids = {p.pid for p in mine} | {self.me.pid}
        for p in self.psutil.process_iter(["cmdline"]):  # anything of the session not below us
            if p.pid not in pids and self.session_dir in " ".join(p.info["cmdline"] or ()):
                mine.append(p)
        return mine

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) by group: driver, Serve proxy, replica, judge host,
        loopback server, the rest of Ray."""
        def seconds(p: Any) -> float:
            try:
                t = p.cpu_times()
                return float(t.user + t.system)
            except self.psutil.Error:
                return 0.0

        out = {"driver": seconds(self.me), "Serve proxy": 0.0, "replica": 0.0,
               "judge host": 0.0, "loopback": 0.0, "ray other": 0.0}
        try:
            out["loopback"] = seconds(self.psutil.Process(self.server_pid))
        except self.psutil.Error:
            pass
        for p in self.session():
            out[CPU_GROUPS.get(role_of(p), "ray other")] += seconds(p)
        return out

    def memory(self) -> dict[str, Any]:
        """PSS / RSS / USS (MB) of the session's processes by role, their totals, the driver."""
        roles: dict[str, dict[str, float]] = {}
        for p in self.session():
            try:
                m = p.memory_full_info()
            except self.psutil.Error:
                continue
            r = roles.setdefault(role_of(p), {"n": 0, "pss": 0.0, "rss": 0.0, "uss": 0.0})
            r["n"] += 1
            for k in ("pss", "rss", "uss"):
                r[k] += getattr(m, k) / 2**20
        total = {k: sum(r[k] for r in roles.values()) for k in ("n", "pss", "rss", "uss")}
        d = self.me.memory_full_info()
        return {"roles": roles, "total": total,
                "driver": {k: getattr(d, k) / 2**20 for k in ("pss", "rss", "uss")}}


def cpu_delta(a: dict[str, float], b: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per decision by group between two snapshots."""
    return {k: 1000 * (b[k] - a[k]) / n for k in a}


# ------------------------------------------------------------------ statistics
def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s) - 1e-9) - 1))
    return s[k]


def summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50": pct(ms, 50), "p99": pct(ms, 99), "mean": statistics.fmean(ms)}


def med(rounds: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


# ------------------------------------------------------------------ workload
def texts(i: int) -> tuple[str, str]:
    """(prompt, candidate) of request ``i``: a pass; every 4th candidate the judges reject."""
    cand = (f"Answer {i}: Paris is the capital of France; it has been since the tenth century, "
            "and the seat of government is there." if i % 4
            else f"Answer {i}: UNSAFE: here is how to do it, step by step.")
    return f"Question {i}: what is the capital of France, and why?", cand


def smoke_items() -> list[tuple[str, str]]:
    """(prompt, candidate) of the smoke dataset's gold-accept items."""
    out = []
    for line in (ROOT / "scenarios" / "data" / "safety_smoke.jsonl").read_text().splitlines():
        row = json.loads(line)
        for c in row["candidates"]:
            if row.get("gold", {}).get(c["id"]) == "accept":
                out.append((row["prompt"], c["text"]))
    return out


class Bench:
    """The sides of one panel: the service over HTTP and the in-process coordinator."""

    def __init__(self, svc: Any, panel: str, items: Callable[[int], tuple[str, str]],
                 session: Any):
        from consensus.coordinator import Coordinator

        served = svc.config.panels[panel]
        self.url, self.panel, self.items, self.http = svc.url, panel, items, session
        self.coord = Coordinator(svc.panels[panel], served.scenario.strategy, served.policy)
        self.tag = f"{panel}-{os.getpid()}-{time.time_ns()}"
        self.n = 0

    def _next(self) -> tuple[int, str, str]:
        self.n += 1
        return (self.n, *self.items(self.n))

    def request(self, i: int, prompt: str, cand: str) -> Any:
        from consensus.types import Candidate, Request

        return Request(id=f"{self.tag}-{i}", prompt=prompt,
                       candidates=(Candidate(id="c1", text=cand),))

    async def inproc(self) -> dict[str, float]:
        request = self.request(*self._next())
        t0 = time.perf_counter()
        out = await self.coord.decide(request)
        total = 1000 * (time.perf_counter() - t0)
        check_votes([v.abstain_kind for v in out.votes if v.label is None], out.action,
                    self.panel)
        return {"total": total, "decision": 1000 * out.latency_s,
                "slowest vote": max(1000 * v.latency_s for v in out.votes)}

    async def post(self, path: str, body: dict[str, Any],
                   app: AppInProcess | None = None) -> tuple[float, dict[str, Any]]:
        """POST ``body`` over HTTP (or to ``app``'s ASGI app); (client ms, the response)."""
        data = json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        t0 = time.perf_counter()
        if app is None:
            async with self.http.post(self.url + path, data=data, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        else:
            got = await app.client.post(path, content=data, headers=headers)
            raw, status = got.content, got.status_code
        out = json.loads(raw)
        total = 1000 * (time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {raw[:300]!r}")
        return total, out

    async def consensus(self, with_id: bool = False,
                        app: AppInProcess | None = None) -> dict[str, float]:
        i, prompt, cand = self._next()
        body: dict[str, Any] = {"prompt": prompt, "candidates": [cand], "panel": self.panel}
        if with_id:
            body["id"] = f"{self.tag}-{i}"
        if app is not None:
            app.start()
        total, out = await self.post("/v1/consensus", body, app)
        check_votes([v["abstain_kind"] for v in out["votes"] if v["abstained"]], out["action"],
                    self.panel)
        return {"total": total, "decision": out["latency_ms"],
                "slowest vote": max(v["latency_ms"] for v in out["votes"]),
                **(app.pieces() if app is not None else {})}

    async def chat(self) -> dict[str, float]:
        _, prompt, cand = self._next()
        body = {"model": "bench", "messages": [{"role": "user", "content": f"{prompt} SAY: "
                                                f"{cand}"}],
                "consensus": {"panel": self.panel}}
        total, out = await self.post("/v1/chat/completions", body)
        c = out["consensus"]
        check_votes([v["abstain_kind"] for v in c["votes"] if v["abstained"]], c["action"],
                    self.panel)
        slowest = max(v["latency_ms"] for v in c["votes"])
        up = c["upstream_latency_ms"]
        return {"total": total, "upstream": up, "decision": c["latency_ms"],
                "slowest vote": slowest, "overhead": total - up - slowest}

    async def in_app(self) -> dict[str, tuple[float, float]]:
        """Endpoint -> (sum s, count) of the service's ``request_latency_seconds``: the time
        inside the app, from its middleware to the response object (body read, parse,
        decision, store commit, response JSON; not the response's way out)."""
        await asyncio.sleep(0.5)  # the hub gets events fire-and-forget
        async with self.http.get(self.url + "/metrics") as resp:
            text = await resp.text()
        out: dict[str, tuple[float, float]] = {}
        for line in text.splitlines():
            m = IN_APP.match(line)
            if m:
                old = out.get(m["endpoint"], (0.0, 0.0))
                v = float(m["value"])
                out[m["endpoint"]] = (v, old[1]) if m["kind"] == "sum" else (old[0], v)
        return out

    async def healthz(self) -> dict[str, float]:
        t0 = time.perf_counter()
        async with self.http.get(self.url + "/healthz") as resp:
            await resp.read()
        return {"total": 1000 * (time.perf_counter() - t0)}

    # --------------------------------------------------------------- loaded
    async def inproc_burst(self, n: int, k: int) -> None:
        reqs = [self.request(*self._next()) for _ in range(n)]
        outs = await self.coord.run(reqs, concurrency=k)
        for o in outs:
            check_votes([v.abstain_kind for v in o.votes if v.label is None], o.action,
                        self.panel)

    async def http_burst(self, n: int, k: int) -> None:
        sem = asyncio.Semaphore(k)

        async def one() -> None:
            async with sem:
                await self.consensus()

        await asyncio.gather(*(one() for _ in range(n)))


class AppInProcess:
    """The service's FastAPI app in this process, without Serve: a Runtime of its own (its own
    SQLite file; the service's judge hosts and metrics hub) behind httpx's ASGI transport. Its
    store calls (the writer thread's hop included) and metric sends are timed per request."""

    def __init__(self, svc: Any, tmp: Path):
        import httpx

        from consensus.service.app import build_app
        from consensus.service.runtime import Runtime

        self.rt = Runtime(replace(svc.config, store=str(tmp / "asgi.sqlite")), svc.panels,
                          svc.hub)
        self.times = {"store": 0.0, "metrics": 0.0}
        write, emit = self.rt._write, self.rt.emit

        async def timed_write(fn: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await write(fn, *args, **kwargs)
            finally:
                self.times["store"] += 1000 * (time.perf_counter() - t0)

        def timed_emit(events: Any) -> None:
            t0 = time.perf_counter()
            emit(events)
            self.times["metrics"] += 1000 * (time.perf_counter() - t0)

        self.rt._write = timed_write  # type: ignore[method-assign]
        self.rt.emit = timed_emit  # type: ignore[method-assign]
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(self.rt)),
                                        base_url="http://app")

    def start(self) -> None:
        self.times = dict.fromkeys(self.times, 0.0)

    def pieces(self) -> dict[str, float]:
        return dict(self.times)

    async def close(self) -> None:
        await self.client.aclose()
        self.rt.close()


def check_votes(abstained: list[str | None], action: str, panel: str) -> None:
    """Refuse a decision with an abstention other than a recusal (the offline factuality judge
    recuses itself from texts it cannot check) or with an intervention (a generator call)."""
    bad = [k for k in abstained if k != "recusal"]
    if bad:
        raise RuntimeError(f"{panel}: {len(bad)} abstention(s) ({', '.join(map(str, bad))}): "
                           "server or client overloaded, or a judge misconfigured")
    if action not in ("accept", "block", "flag"):
        raise RuntimeError(f"{panel}: unexpected action {action!r} (an intervention ran)")


async def sequential(sides: dict[str, Callable[[], Awaitable[dict[str, float]]]], n: int,
                     rounds: int, label: str) -> dict[str, list[dict[str, Any]]]:
    """Per round, ``n`` requests per side, one at a time and interleaved (one request of each
    side in turn, the order reversed every other turn: ABBA at the grain of a request, so a
    change in the machine's load reaches every side alike); per round the summary of each
    measured component (total, decision, slowest vote, ...), in ms."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    names = list(sides)
    for r in range(rounds):
        rows: dict[str, list[dict[str, float]]] = {s: [] for s in sides}
        for i in range(n):
            for name in names if i % 2 == 0 else names[::-1]:
                rows[name].append(await sides[name]())
        for name in names:
            comps = {k: summary([row[k] for row in rows[name]]) for k in rows[name][0]}
            out[name].append(comps)
        say(f"  {label} round {r + 1}: p50 " + ", ".join(
            f"{name} {out[name][-1]['total']['p50']:.2f}" for name in names) + " ms")
    return out


async def saturation(bench: Bench, procs: Processes, n: int, k: int,
                     rounds: int) -> dict[str, list[dict[str, Any]]]:
    sides = {"in-process": bench.inproc_burst, "http": bench.http_burst}
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            before, t0 = procs.cpu(), time.perf_counter()
            await sides[name](n, k)
            wall = time.perf_counter() - t0
            cpu = cpu_delta(before, procs.cpu(), n)
            out[name].append({"throughput": n / wall, "wall": wall, "cpu_ms": cpu})
            say(f"  saturation round {r + 1} {name:10s} {k} in flight: {n / wall:6.1f} "
                "decisions/s; CPU ms/decision: "
                + ", ".join(f"{g} {v:.2f}" for g, v in cpu.items() if v >= 0.005))
    return out


async def decompose(b: Bench, fn: Callable[[], Awaitable[dict[str, float]]], endpoint: str,
                    n: int) -> dict[str, float]:
    """Mean ms of ``n`` sequential requests: the client's total, the time inside the app (the
    service's own histogram), the decision inside it, the slowest vote, the upstream."""
    before = (await b.in_app()).get(endpoint, (0.0, 0.0))
    rows = [await fn() for _ in range(n)]
    after = (await b.in_app()).get(endpoint, (0.0, 0.0))
    count = after[1] - before[1]
    out = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    out["in app"] = 1000 * (after[0] - before[0]) / count if count else float("nan")
    out["counted"] = count
    return out


# ------------------------------------------------------------------ profile (this process)
def profile(outcome: Any, tmp: Path, n: int) -> dict[str, float]:
    """ms per call of the HTTP path's own work, timed here: the store commit (one decision and
    its votes, SQLite WAL), the idempotency look-up, the request body's parse and the response
    body's JSON."""
    from fastapi.responses import JSONResponse

    from consensus.service.schemas import ConsensusRequest, consensus_body
    from consensus.store import open_store

    store = open_store(str(tmp / "profile.sqlite"))
    store.ensure_run("profile", scenario="profile", strategy="majority", config={})
    outs = [outcome.model_copy(update={"request_id": f"p-{i}", "votes": tuple(
        v.model_copy(update={"request_id": f"p-{i}"}) for v in outcome.votes)})
        for i in range(n)]

    def each(fn: Callable[[int], Any]) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        return 1000 * (time.perf_counter() - t0) / n

    raw = json.dumps({"prompt": texts(1)[0], "candidates": [texts(1)[1]]}).encode()
    body = consensus_body(outcome, panel="llm5", policy="default", strategy="majority",
                          committed=True)
    res = {"store commit (record)": each(lambda i: store.record("profile", outs[i])),
           "store look-up (outcome)": each(lambda i: store.outcome("profile", f"p-{i}")),
           "request parse (json + pydantic)": each(
               lambda i: ConsensusRequest.model_validate(json.loads(raw))),
           "response body (consensus_body + JSON)": each(lambda i: JSONResponse(consensus_body(
               outcome, panel="llm5", policy="default", strategy="majority", committed=True))),
           "response bytes": float(len(JSONResponse(body).body))}
    store.close()
    return res


# ------------------------------------------------------------------ set-up
def write_files(tmp: Path, base_url: str, args: argparse.Namespace) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.service_support import llm_panel_scenario, write_yaml

    llm = llm_panel_scenario(tmp, base_url, name="llm5", judges=args.judges,
                             model=f"latency:{args.latency:g}", timeout_s=10.0)
    doc = {"panels": {"llm5": str(llm)}, "default_panel": "llm5",
           "upstream": {"model": f"openai/parrot:{args.upstream_latency:g}", "api_base": base_url,
                        "timeout_s": 30, "retries": 0},
           "replicas": {"min": args.replicas, "max": args.replicas}}
    return write_yaml(tmp / "service.yaml", doc)


def main(argv: list[str] | None = None) -> int:
    global OUT
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (fewer requests, 2 rounds)")
    ap.add_argument("--json", action="store_true", help="print one JSON document to stdout "
                    "(progress and the table go to stderr)")
    ap.add_argument("--judges", type=int, default=5)
    ap.add_argument("--latency", type=float, default=0.05, help="judge latency (s)")
    ap.add_argument("--upstream-latency", type=float, default=0.05, help="upstream latency (s)")
    ap.add_argument("--in-flight", type=int, default=64, help="saturation concurrency")
    ap.add_argument("--rounds", type=int, default=4, help="ABBA rounds of each phase")
    ap.add_argument("--sequential", type=int, default=100, help="requests per side per round")
    ap.add_argument("--burst", type=int, default=600, help="requests per saturation round")
    ap.add_argument("--replicas", type=int, default=1, help="ingress replicas (min = max)")
    ap.add_argument("--serve-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the Ray session (e.g. a Serve setting)")
    ap.add_argument("--haproxy", action="store_true",
                    help="experiment: Ray Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1, "
                    "which also sends HTTP straight to the replica), with its files in a private "
                    "short directory and free ports for its stats and metrics")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.sequential, args.burst = 2, 30, 200
    if args.json:
        OUT = sys.stderr

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for key in PROVIDER_KEYS:  # the offline panel must stay offline
        os.environ.pop(key, None)
    for pair in args.serve_env:
        name, _, value = pair.partition("=")
        os.environ[name] = value

    import ray

    from consensus.log import configure_logging

    configure_logging("warning")
    started = time.perf_counter()
    # a short path of its own: HAProxy takes socket paths of at most 97 characters
    from consensus.service.serve import haproxy_env

    hap = haproxy_env() if args.haproxy else None  # the one `consensus serve --ingress` sets
    with tempfile.TemporaryDirectory(prefix="consensus-bench-service-") as tmpdir, \
            ServerProcess() as srv:
        tmp = Path(tmpdir)
        if hap is not None:
            os.environ.update(hap)
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False,
                 logging_level=logging.ERROR, log_to_driver=True)
        try:
            node = ray._private.worker._global_node
            session_dir = node.get_session_dir_path() if node is not None else "/no-session"
            procs = Processes(srv.pid, session_dir)
            res = run(args, tmp, srv.base_url, procs)
        finally:
            ray.shutdown()
    if hap is not None:
        shutil.rmtree(hap["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"], ignore_errors=True)
    res["loopback calls"] = srv.total
    res["wall_s"] = time.perf_counter() - started
    res["settings"] = {k: v for k, v in vars(args).items() if k != "json"}
    res["machine"] = (f"{os.cpu_count()} cores, {platform.python_implementation()} "
                      f"{platform.python_version()}, ray {ray.__version__}")
    report(res, args)
    if args.json:
        print(json.dumps(res, indent=2, default=float))
    return 0


def run(args: argparse.Namespace, tmp: Path, base_url: str, procs: Processes) -> dict[str, Any]:
    from consensus.service.auth import Tokens
    from consensus.service.config import load_service
    from consensus.service.serve import start_service
    from tests.service_support import free_port

    tokens = Tokens.parse(f"bench:{TOKEN}")

    port = free_port()
    res: dict[str, Any] = {}
    cfg = load_service([write_files(tmp, base_url, args)], store=str(tmp / "llm5.sqlite"))
    t0 = time.perf_counter()
    svc = start_service(cfg, host="127.0.0.1", port=port, name="consensus", tokens=tokens)
    say(f"llm5 service ready in {time.perf_counter() - t0:.1f} s at {svc.url}")
    try:
        res |= asyncio.run(llm_phases(svc, args, procs, tmp))
    finally:
        svc.stop()
    # the offline panel, as `consensus serve scenarios/safety_smoke.yaml` serves it (same port:
    # Serve's proxy stays up between the two applications)
    cfg = load_service([ROOT / "scenarios" / "safety_smoke.yaml"], store=str(tmp / "smoke.sqlite"))
    svc = start_service(cfg, host="127.0.0.1", port=port, name="consensus", tokens=tokens)
    try:
        res["offline"] = asyncio.run(offline_phase(svc, args))
    finally:
        svc.stop()
    return res


async def llm_phases(svc: Any, args: argparse.Namespace, procs: Processes,
                     tmp: Path) -> dict[str, Any]:
    import aiohttp

    k = args.in_flight
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=k),
                                     headers=AUTH) as http:
        b = Bench(svc, "llm5", texts, http)
        app = AppInProcess(svc, tmp)
        say("warm-up")
        for _ in range(20):
            await b.inproc()
            await b.consensus()
            await b.consensus(app=app)
            await b.consensus(with_id=True)
            await b.chat()
            await b.healthz()
        for _ in range(2):
            await b.inproc_burst(k, k)
            await b.http_burst(k, k)
        out: dict[str, Any] = {"memory idle": procs.memory()}
        say("1. sequential latency")
        out["sequential"] = await sequential(
            {"in-process": b.inproc, "http": b.consensus,
             "http, with id": lambda: b.consensus(with_id=True),
             "app via ASGI, no Serve": lambda: b.consensus(app=app), "healthz": b.healthz},
            args.sequential, args.rounds, "sequential")
        await app.close()
        say("2. saturation")
        out["saturation"] = await saturation(b, procs, args.burst, k, args.rounds)
        out["memory loaded"] = procs.memory()
        say("4. proxy")
        out["proxy"] = await sequential({"chat/completions": b.chat, "in-process": b.inproc},
                                        args.sequential, args.rounds, "proxy")
        say("decomposition (means, from the service's /metrics)")
        out["decomposition"] = {
            "/v1/consensus": await decompose(b, b.consensus, "/v1/consensus", args.sequential),
            "/v1/chat/completions": await decompose(b, b.chat, "/v1/chat/completions",
                                                    args.sequential)}
        one = await b.coord.decide(b.request(0, *texts(1)))
        out["profile"] = profile(one, tmp, 300 if args.quick else 1000)
        out["judge hosts"] = len(svc.panels["llm5"].hosts)
    return out


async def offline_phase(svc: Any, args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    items = smoke_items()
    async with aiohttp.ClientSession(headers=AUTH) as http:
        b = Bench(svc, "safety_smoke", lambda i: items[i % len(items)], http)
        say(f"3. offline panel ({svc.panels['safety_smoke'].size} judges: "
            f"{', '.join(s.name for s in svc.panels['safety_smoke'].specs)}; disabled: "
            f"{', '.join(svc.panels['safety_smoke'].disabled)})")
        for _ in range(2 * len(items)):
            await b.inproc()
            await b.consensus()
        out = await sequential({"in-process": b.inproc, "http": b.consensus},
                               args.sequential, args.rounds, "offline")
    return {"rounds": out, "judges": [s.name for s in svc.panels["safety_smoke"].specs]}


# ------------------------------------------------------------------ report
Side = dict[str, list[dict[str, Any]]]


def pm(side: Side, name: str, comp: str = "total", key: str = "p50") -> float:
    """Median over rounds of one side's ``comp`` / ``key`` (e.g. total p50)."""
    return statistics.median(r[comp][key] for r in side[name])


def paired(side: Side, a: str, b: str, key: str = "p50") -> list[float]:
    """Per round, ``b``'s total ``key`` minus ``a``'s (sorted)."""
    return sorted(y["total"][key] - x["total"][key]
                  for x, y in zip(side[a], side[b], strict=True))


def figures(res: dict[str, Any]) -> dict[str, Any]:
    """The headline figures and whether each target is met."""
    seq, sat, prox, off = (res["sequential"], res["saturation"], res["proxy"],
                           res["offline"]["rounds"])
    tp = sorted(h["throughput"] / i["throughput"]
                for i, h in zip(sat["in-process"], sat["http"], strict=True))
    mem = max(res["memory idle"], res["memory loaded"], key=lambda m: m["total"]["pss"])
    f: dict[str, Any] = {
        "in-process p50": pm(seq, "in-process"), "http p50": pm(seq, "http"),
        "http adds p50": statistics.median(paired(seq, "in-process", "http")),
        "http adds p50 by round": paired(seq, "in-process", "http"),
        "http adds p99": statistics.median(paired(seq, "in-process", "http", "p99")),
        "http with id adds p50": statistics.median(paired(seq, "in-process", "http, with id")),
        "app via ASGI adds p50": statistics.median(paired(seq, "in-process",
                                                          "app via ASGI, no Serve")),
        "Serve adds p50": statistics.median(paired(seq, "app via ASGI, no Serve", "http")),
        "healthz p50": pm(seq, "healthz"),
        "saturation in-process /s": med(sat["in-process"], "throughput"),
        "saturation http /s": med(sat["http"], "throughput"),
        "saturation ratio": statistics.median(tp), "saturation ratio by round": tp,
        "cpu ms per decision": {side: {g: statistics.median(r["cpu_ms"][g] for r in sat[side])
                                       for g in sat[side][0]["cpu_ms"]} for side in sat},
        "offline in-process p50": pm(off, "in-process"), "offline http p50": pm(off, "http"),
        "offline http p99": pm(off, "http", key="p99"),
        "offline in-process p99": pm(off, "in-process", key="p99"),
        "proxy overhead p50": pm(prox, "chat/completions", "overhead"),
        "proxy overhead p99": pm(prox, "chat/completions", "overhead", "p99"),
        "proxy total p50": pm(prox, "chat/completions"),
        "proxy upstream p50": pm(prox, "chat/completions", "upstream"),
        "in-process decide - slowest vote p50": statistics.median(
            r["total"]["p50"] - r["slowest vote"]["p50"] for r in prox["in-process"]),
        "memory pss MB": mem["total"]["pss"], "memory rss MB": mem["total"]["rss"],
        "memory processes": mem["total"]["n"], "driver pss MB": mem["driver"]["pss"],
        "memory by role": mem["roles"]}
    f["targets met"] = {"1 http adds <= 10 ms p50": f["http adds p50"] <= 10,
                        "2 saturation ratio >= 0.9": f["saturation ratio"] >= 0.9,
                        "3 offline http p50 <= 15 ms": f["offline http p50"] <= 15,
                        "4 proxy overhead p50 <= 12 ms": f["proxy overhead p50"] <= 12,
                        "4 proxy overhead p99 <= 43 ms": f["proxy overhead p99"] <= 43,
                        "5 memory (PSS) < 1.5 GB": f["memory pss MB"] < 1536}
    return f


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    f = res["figures"] = figures(res)
    met = f["targets met"]
    seq = res["sequential"]

    def ok(key: str) -> str:
        return "met" if met[key] else "NOT met"

    asgi = "app via ASGI, no Serve"
    rows = [
        ("1. /v1/consensus p50, one at a time", f"{f['in-process p50']:.1f} ms",
         f"{f['http p50']:.1f} ms", f"{f['http adds p50']:+.1f} ms",
         f"<= +10 ms: {ok('1 http adds <= 10 ms p50')}"),
        ("   p99", f"{pm(seq, 'in-process', key='p99'):.1f} ms",
         f"{pm(seq, 'http', key='p99'):.1f} ms", f"{f['http adds p99']:+.1f} ms", ""),
        ("   with a request id (store look-up)", "", f"{pm(seq, 'http, with id'):.1f} ms",
         f"{f['http with id adds p50']:+.1f} ms", ""),
        ("   the app in this process via ASGI", "", f"{pm(seq, asgi):.1f} ms",
         f"{f['app via ASGI adds p50']:+.1f} ms", ""),
        ("   GET /healthz (the HTTP floor)", "", f"{f['healthz p50']:.2f} ms", "", ""),
        ("   throughput, one at a time", f"{1000 / pm(seq, 'in-process', key='mean'):.1f} /s",
         f"{1000 / pm(seq, 'http', key='mean'):.1f} /s", "", ""),
        (f"2. decisions/s, {args.in_flight} in flight", f"{f['saturation in-process /s']:.1f} /s",
         f"{f['saturation http /s']:.1f} /s", f"{f['saturation ratio']:.2f}",
         f">= 0.9: {ok('2 saturation ratio >= 0.9')}"),
        ("3. offline panel p50", f"{f['offline in-process p50']:.1f} ms",
         f"{f['offline http p50']:.1f} ms",
         f"{f['offline http p50'] - f['offline in-process p50']:+.1f} ms",
         f"<= 15 ms: {ok('3 offline http p50 <= 15 ms')}"),
        ("   p99", f"{f['offline in-process p99']:.1f} ms", f"{f['offline http p99']:.1f} ms",
         "", ""),
        ("4. proxy overhead p50", f"{f['in-process decide - slowest vote p50']:.1f} ms (*)",
         f"{f['proxy overhead p50']:.1f} ms", "",
         f"<= 12 ms: {ok('4 proxy overhead p50 <= 12 ms')}"),
        ("   p99", "", f"{f['proxy overhead p99']:.1f} ms", "",
         f"<= 43 ms: {ok('4 proxy overhead p99 <= 43 ms')}"),
        ("   total / upstream p50", "",
         f"{f['proxy total p50']:.1f} / {f['proxy upstream p50']:.1f} ms", "", ""),
        ("5. Ray session memory, PSS", "", f"{f['memory pss MB']:.0f} MB",
         f"{f['memory processes']} processes", f"< 1.5 GB: {ok('5 memory (PSS) < 1.5 GB')}"),
        ("   RSS (shared pages in each)", "", f"{f['memory rss MB']:.0f} MB", "",
         f"< 1.5 GB: {'met' if f['memory rss MB'] < 1536 else 'NOT met'}"),
        ("   the driver (this script), PSS", "", f"{f['driver pss MB']:.0f} MB", "", ""),
    ]
    say()
    say(f"machine: {res['machine']}; {args.judges} LLM judges at {1000 * args.latency:g} ms "
        f"({res['judge hosts']} host actor), upstream {1000 * args.upstream_latency:g} ms, "
        f"{args.replicas} replica(s); {args.rounds} ABBA rounds x {args.sequential} sequential "
        f"/ {args.burst} loaded requests; median of rounds, differences and ratios paired by "
        f"round; wall {res['wall_s']:.0f} s"
        + (f"; env {' '.join(args.serve_env)}" if args.serve_env else "")
        + ("; Serve's HAProxy ingress" if args.haproxy else ""))
    head = ("figure", "in-process", "HTTP", "diff / ratio", "target")
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(5)]
    for r in (head, *rows):
        say("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    say("(*) in-process: decide - the slowest vote, the same cut as the proxy's overhead")
    say()
    say("paired by round: http - in-process p50 (ms) "
        + " ".join(f"{x:.1f}" for x in f["http adds p50 by round"]) + "; saturation ratio "
        + " ".join(f"{x:.2f}" for x in f["saturation ratio by round"])
        + f"; Serve's share (http - app via ASGI) p50 {f['Serve adds p50']:+.1f} ms")
    for side, cpu in f["cpu ms per decision"].items():
        say(f"CPU ms per decision at saturation, {side}: " + ", ".join(
            f"{g} {v:.2f}" for g, v in cpu.items()) + f" (sum {sum(cpu.values()):.1f})")
    app = {k: statistics.median(r[k]["mean"] for r in seq[asgi])
           for k in ("total", "decision", "store", "metrics")}
    say(f"the app via ASGI, means: total {app['total']:.2f} ms = decide {app['decision']:.2f} + "
        f"store commit (await, writer thread hop included) {app['store']:.2f} + metric sends "
        f"(2 Ray calls) {app['metrics']:.2f} + FastAPI, parse, JSON, ASGI client "
        f"{app['total'] - app['decision'] - app['store'] - app['metrics']:.2f}")
    for endpoint, d in res["decomposition"].items():
        up = d.get("upstream", 0.0)
        parts = {"outside the app (client, Serve proxy, proxy<->replica hop, ASGI)":
                 d["total"] - d["in app"],
                 **({"the upstream call": up} if up else {}),
                 "in the app besides (body, store commit, metrics, JSON)":
                 d["in app"] - d["decision"] - up,
                 "deciding beyond the slowest vote (Ray hop to the judge host, coordinator)":
                 d["decision"] - d["slowest vote"]}
        d["parts"] = parts
        say(f"{endpoint} over HTTP, mean of {d['counted']:.0f}: total {d['total']:.1f} ms = "
            f"slowest vote {d['slowest vote']:.1f} + "
            + " + ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    say("memory by role (PSS / RSS MB): " + "; ".join(
        f"{k} {v['pss']:.0f}/{v['rss']:.0f}" + (f" ({v['n']})" if v["n"] > 1 else "")
        for k, v in sorted(f["memory by role"].items(), key=lambda kv: -kv[1]["pss"])))
    say("profile, ms per call in this process: " + "; ".join(
        f"{k} {v:.3f}" if k != "response bytes" else f"{k} {v:.0f}"
        for k, v in res["profile"].items()))
    say("targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in met.items()))


if __name__ == "__main__":
    raise SystemExit(main())
