"""Client CPU per LLM call: plain HTTP clients, the OpenAI SDK, litellm, and the project's judge.

Every path makes the same chat-completions call (the judge's own messages, the same
``response_format``, temperature and ``max_tokens``) to the SAME loopback server
(``tests/loopback.py``), which runs in a process of its own (``ServerProcess`` of
``benchmarks/overhead.py``) so that its CPU is not counted here. The figure is this process's CPU
time (``time.process_time()``, all threads) over ``--calls`` calls with ``--in-flight`` calls
outstanding (worker tasks on one event loop), divided by the calls.

Paths (``--paths`` picks a subset, in this order of names):

* ``aiohttp``: ``aiohttp.ClientSession.post`` and a JSON decode: the floor, the baseline of the
  ratios.
* ``httpx`` / ``httpx2``: ``AsyncClient.post`` of each installed package (``httpx2`` is the one
  the OpenAI SDK uses), connection pool unbounded like aiohttp's.
* ``openai``: ``AsyncOpenAI(max_retries=0).chat.completions.create``.
* ``litellm``: ``litellm.acompletion(model="openai/<alias>", api_base=..., num_retries=0)``.
* ``judge:litellm`` / ``judge:http``: ``LLMJudge(spec).judge(request, candidate)``, the full
  path (prompt, limits, parse, vote); ``judge:http`` only when ``LLMJudgeSpec`` has a
  ``client`` field (the lean aiohttp client), otherwise the one judge is ``judge:litellm``.

Modifiers: ``<path>@priced`` calls model ``gpt-4o-mini`` (a model litellm prices, so it computes
a cost; the loopback answers it like any other) instead of an unpriced alias; ``<path>+freeze``
runs its rounds after ``gc.collect(); gc.freeze()`` (undone after each round), the fix proposed
for the judge actor. Default: ``litellm@priced`` and ``litellm+freeze`` besides the plain paths.

Every path is warmed up first (imports, first calls, then a burst that fills the connection pool);
rounds alternate the order (forward, backward) because this shared 2-core machine is noisy. The
table gives the median and the best round; ``x aiohttp`` is the median of the per-round ratios to
the aiohttp floor of the same round, ``x litellm`` the ratio to the best (lowest) litellm path.
CPU per call is the figure to read: wall calls/s also depends on what else the machine runs.

Figures of one default run (2 cores, loaded by other jobs; CPU ms per call, median of 3 rounds):
aiohttp 0.17 (1.00), judge:http 0.29 (x1.6), httpx2 1.27 (x6.6), openai 2.5 (x15), httpx 5.7
(x35: httpcore's pool scans every connection for each queued request, so its cost grows with the
calls in flight; ~1 ms at 1 in flight), judge:litellm 5.6, litellm 5.6 (priced model) to 6.7
(unpriced alias: litellm's failing cost lookup runs on every call), x33-37.

Usage::

    .venv/bin/python benchmarks/llm_call.py [--calls 2000] [--in-flight 64] [--rounds 3]
        [--latency 0.0] [--paths aiohttp,litellm,judge:http] [--response-format json_object]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "CONSENSUS_BENCH_DUMMY_KEY"
KEY = "sk-bench-dummy-0000"
PRICED = "gpt-4o-mini"  # in litellm's local cost map; the loopback answers it as "valid"
LABELS = ("accept", "reject")
TIMEOUT_S = 60.0


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# ------------------------------------------------------------------ the calls
class Workload:
    """What every path sends: the judge's messages for a few requests, as full bodies."""

    def __init__(self, base_url: str, response_format: str, n_requests: int = 64):
        from benchmarks.overhead import make_requests
        from judges.llm import LLMJudgeSpec

        self.base_url = base_url
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.requests = make_requests("bench", n_requests)
        self.spec = LLMJudgeSpec(name="bench-ref", model="openai/bench-ref")
        self.response_format = response_format
        self.format_body = _format_body(response_format, self.spec)
        self.messages = [_messages(self.spec, r, r.candidates[0]) for r in self.requests]

    def body(self, i: int, model: str) -> dict[str, Any]:
        out: dict[str, Any] = {"model": model, "messages": self.messages[i % len(self.messages)],
                               "temperature": self.spec.temperature,
                               "max_tokens": self.spec.max_tokens}
        if self.format_body is not None:
            out["response_format"] = self.format_body
        return out


def _messages(spec: Any, request: Any, candidate: Any) -> list[dict[str, str]]:
    """The judge's own messages (whichever helpers judges.llm has today)."""
    from judges import llm

    if hasattr(llm, "build_messages"):
        return llm.build_messages(spec, request, candidate)
    return [{"role": "system", "content": llm.system_message(spec, False)},
            {"role": "user", "content": llm.user_message(request, candidate)}]


def _format_body(kind: str, spec: Any) -> dict[str, Any] | None:
    if kind == "none":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    from judges import llm

    try:
        schema = llm.verdict_schema(LABELS, (), spec.critique_max_chars)
    except (AttributeError, TypeError):  # an older judge: the reply model's own schema
        schema = llm.VerdictReply.model_json_schema()
    return {"type": "json_schema", "json_schema": {"name": "verdict", "strict": True,
                                                   "schema": schema}}


def _ok(content: str | None) -> bool:
    try:
        return json.loads(content or "")["verdict"] in LABELS
    except (ValueError, KeyError, TypeError):
        return False


class ClientPath:
    """One client path: ``setup`` (not timed), ``call(i)`` -> reply valid?, ``close``."""

    label = ""
    freeze = False

    def __init__(self, work: Workload, model: str):
        self.work, self.model = work, model

    async def setup(self) -> None:
        pass

    async def call(self, i: int) -> bool:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class AiohttpPath(ClientPath):
    async def setup(self) -> None:
        import aiohttp

        self.label = f"aiohttp {version('aiohttp')}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))

    async def call(self, i: int) -> bool:
        async with self.session.post(self.work.url, json=self.work.body(i, self.model)) as resp:
            data = json.loads(await resp.read())
        return resp.status == 200 and _ok(data["choices"][0]["message"]["content"])

    async def close(self) -> None:
        await self.session.close()


class HttpxPath(ClientPath):
    module = "httpx"

    async def setup(self) -> None:
        import importlib

        httpx = importlib.import_module(self.module)
        self.label = f"{self.module} {version(self.module)}"
        self.client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {KEY}"}, timeout=TIMEOUT_S,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None))

    async def call(self, i: int) -> bool:
        resp = await self.client.post(self.work.url, json=self.work.body(i, self.model))
        return resp.status_code == 200 and _ok(resp.json()["choices"][0]["message"]["content"])

    async def close(self) -> None:
        await self.client.aclose()


class Httpx2Path(HttpxPath):
    module = "httpx2"


class OpenAIPath(ClientPath):
    async def setup(self) -> None:
        import openai

        self.label = f"openai {openai.__version__}"
        self.client = openai.AsyncOpenAI(base_url=self.work.base_url, api_key=KEY,
                                         max_retries=0, timeout=TIMEOUT_S)

    async def call(self, i: int) -> bool:
        body = self.work.body(i, self.model)
        resp = await self.client.chat.completions.create(**body)
        return _ok(resp.choices[0].message.content)

    async def close(self) -> None:
        await self.client.close()


class LitellmPath(ClientPath):
    async def setup(self) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before the import
        import litellm

        litellm.suppress_debug_info = True  # as judges.llm sets it
        self.litellm = litellm
        self.label = f"litellm {version('litellm')}"

    async def call(self, i: int) -> bool:
        body = self.work.body(i, f"openai/{self.model}")
        resp = await self.litellm.acompletion(**body, api_base=self.work.base_url, api_key=KEY,
                                              num_retries=0, timeout=TIMEOUT_S)
        return _ok(resp.choices[0].message.content)


class JudgePath(ClientPath):
    client = "litellm"

    def __init__(self, work: Workload, model: str, in_flight: int):
        super().__init__(work, model)
        self.in_flight = in_flight

    async def setup(self) -> None:
        from judges.llm import LLMJudge, LLMJudgeSpec

        fields = LLMJudgeSpec.model_fields
        kw: dict[str, Any] = {"name": f"bench-judge-{self.client}-{self.model}",
                              "model": f"openai/{self.model}", "api_base": self.work.base_url,
                              "api_key_env": KEY_ENV, "retries": 0, "timeout_s": 120.0,
                              "call_timeout_s": TIMEOUT_S}  # timeout_s > call_timeout_s: litellm
        # then gets the same timeout on every call (it is part of its client cache key)
        if "client" in fields:
            kw["client"] = self.client
        if "endpoint_max_in_flight" in fields:  # a local api_base gets 1 slot by default
            kw["endpoint_max_in_flight"] = self.in_flight
        if "response_format" in fields:
            kw["response_format"] = ("text" if self.work.response_format == "none"
                                     else self.work.response_format)
        elif self.work.response_format == "none":
            kw["json_mode"] = False
        self.judge = LLMJudge(LLMJudgeSpec(**kw))
        got = getattr(self.judge, "client", "litellm")
        if got != self.client:
            raise RuntimeError(f"judge:{self.client} built a {got} judge")
        lib = "litellm" if self.client == "litellm" else "aiohttp"
        self.label = f"LLMJudge/{lib} {version(lib)}"

    async def call(self, i: int) -> bool:
        req = self.work.requests[i % len(self.work.requests)]
        vote = await self.judge.judge(req, req.candidates[0])
        return not vote.abstained

    async def close(self) -> None:
        if self.client == "http":
            from judges.openai_http import session

            await session().close()


class JudgeHttpPath(JudgePath):
    client = "http"


def judge_clients() -> list[str]:
    from judges.llm import LLMJudgeSpec

    return ["litellm", "http"] if "client" in LLMJudgeSpec.model_fields else ["litellm"]


BASES: dict[str, type[ClientPath]] = {
    "aiohttp": AiohttpPath, "httpx": HttpxPath, "httpx2": Httpx2Path, "openai": OpenAIPath,
    "litellm": LitellmPath, "judge:litellm": JudgePath, "judge:http": JudgeHttpPath}


def default_paths() -> list[str]:
    out = ["aiohttp", "httpx"]
    if version("httpx2") != "?":
        out.append("httpx2")
    out += ["openai", "litellm", "litellm@priced", "litellm+freeze"]
    return out + [f"judge:{c}" for c in judge_clients()]


def build_path(name: str, work: Workload, in_flight: int) -> ClientPath:
    base, freeze = (name[:-len("+freeze")], True) if name.endswith("+freeze") else (name, False)
    base, _, model_tag = base.partition("@")
    if base not in BASES or model_tag not in ("", "priced"):
        raise SystemExit(f"unknown path {name!r}; paths: {', '.join(BASES)} "
                         "(suffixes @priced, +freeze)")
    if base == "judge:http" and "http" not in judge_clients():
        raise SystemExit("judge:http: LLMJudgeSpec has no client field yet")
    model = PRICED if model_tag else f"bench-{base.replace(':', '-')}"
    cls = BASES[base]
    path = cls(work, model, in_flight) if issubclass(cls, JudgePath) else cls(work, model)
    path.freeze = freeze
    return path


# ------------------------------------------------------------------ measuring
async def run(path: ClientPath, n: int, k: int, offset: int = 0) -> dict[str, float]:
    """``n`` calls, ``k`` in flight: CPU seconds of this process, wall seconds, bad replies."""
    counter = itertools.count()
    bad = 0

    async def worker() -> None:
        nonlocal bad
        while (i := next(counter)) < n:
            try:
                ok = await path.call(offset + i)
            except Exception as exc:  # noqa: BLE001 - counted, reported below
                ok = False
                if bad == 0:
                    print(f"    {path.label}: {type(exc).__name__}: {str(exc)[:200]}")
            bad += not ok

    gc.collect()  # garbage of the previous path is not this one's
    if path.freeze:
        gc.freeze()
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(k, n))))
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    finally:
        if path.freeze:
            gc.unfreeze()
    return {"cpu_ms": 1000 * cpu / n, "wall_s": wall, "calls_per_s": n / wall, "bad": bad}


async def bench(names: list[str], work: Workload, args: argparse.Namespace,
                server_cpu: Any) -> dict[str, Any]:
    paths = {name: build_path(name, work, args.in_flight) for name in names}
    for name, path in paths.items():  # warm-up: imports, first calls, full pools
        t0 = time.perf_counter()
        await path.setup()
        for count, k in ((3, 1), (2 * args.in_flight, args.in_flight)):  # then a full pool
            res = await run(path, count, k)
            if res["bad"]:
                raise RuntimeError(f"{name}: {res['bad']} bad replies during warm-up")
        print(f"  warm {name:22s} {path.label:28s} {time.perf_counter() - t0:5.1f} s",
              flush=True)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                s0 = server_cpu()
                res = await run(paths[name], args.calls, args.in_flight, offset=r * args.calls)
                res["server_cpu_ms"] = 1000 * (server_cpu() - s0) / args.calls
                if res["bad"]:
                    raise RuntimeError(f"{name}: {res['bad']} bad replies in round {r + 1}")
                rounds[name].append(res)
                print(f"  round {r + 1} {name:22s} CPU {res['cpu_ms']:6.3f} ms/call  "
                      f"{res['calls_per_s']:7.0f} calls/s  (server {res['server_cpu_ms']:.3f} "
                      "ms/call)", flush=True)
    finally:
        for path in paths.values():
            await path.close()
    return {"labels": {n: p.label for n, p in paths.items()}, "rounds": rounds}


def summarise(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rounds = res["rounds"]
    out: dict[str, dict[str, Any]] = {}
    for name, rs in rounds.items():
        cpu = [r["cpu_ms"] for r in rs]
        out[name] = {"label": res["labels"][name], "cpu_ms_median": statistics.median(cpu),
                     "cpu_ms_best": min(cpu),
                     "calls_per_s_median": statistics.median(r["calls_per_s"] for r in rs),
                     "server_cpu_ms_median": statistics.median(r["server_cpu_ms"] for r in rs)}
    if "aiohttp" in rounds:
        for name, rs in rounds.items():
            out[name]["x_aiohttp"] = statistics.median(
                a["cpu_ms"] / b["cpu_ms"] for a, b in zip(rs, rounds["aiohttp"], strict=True))
    lit = [s["cpu_ms_median"] for n, s in out.items() if n.startswith("litellm")]
    if lit:
        for s in out.values():
            s["x_litellm_best"] = s["cpu_ms_median"] / min(lit)
    return out


def report(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} "
          f"{platform.python_version()}; {args.calls} calls x {args.rounds} rounds, "
          f"{args.in_flight} in flight, server latency {1000 * args.latency:g} ms, "
          f"response_format {args.response_format}; client CPU = this process's CPU time")
    head = (f"{'path':22s} {'client':28s} {'CPU ms/call':>11s} {'best':>7s} {'x aiohttp':>9s} "
            f"{'x litellm':>9s} {'calls/s':>8s} {'server ms':>9s}")
    print(head)
    print("-" * len(head))

    def ratio(x: float | None) -> str:
        return f"{x:9.2f}" if x is not None else f"{'-':>9s}"

    for name, s in summary.items():
        print(f"{name:22s} {s['label']:28s} {s['cpu_ms_median']:11.3f} {s['cpu_ms_best']:7.3f} "
              f"{ratio(s.get('x_aiohttp'))} {ratio(s.get('x_litellm_best'))} "
              f"{s['calls_per_s_median']:8.0f} {s['server_cpu_ms_median']:9.3f}")
    print("(median of the rounds; best = lowest round; x aiohttp = median of the per-round "
          "ratios; x litellm = median / the lowest litellm median; server ms = the loopback "
          "process's CPU per call)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per path and round")
    ap.add_argument("--in-flight", type=int, default=64, help="calls outstanding at once")
    ap.add_argument("--rounds", type=int, default=3, help="alternating repeats of each path")
    ap.add_argument("--latency", type=float, default=0.0, help="server latency per call (s)")
    ap.add_argument("--paths", default=None,
                    help="comma-separated subset (default: all; see the module docstring)")
    ap.add_argument("--response-format", choices=("json_object", "json_schema", "none"),
                    default="json_object", help="what every path sends (the judges too)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
    os.environ[KEY_ENV] = KEY
    import psutil

    from benchmarks.overhead import ServerProcess
    from consensus.log import configure_logging

    configure_logging("warning")
    names = [p.strip() for p in args.paths.split(",") if p.strip()] if args.paths \
        else default_paths()
    mode = f"latency:{args.latency:g}"
    script = {PRICED: mode} | {f"bench-{b.replace(':', '-')}": mode for b in BASES}
    with ServerProcess(script) as srv:
        server = psutil.Process(srv.pid)

        def server_cpu() -> float:
            t = server.cpu_times()
            return t.user + t.system

        work = Workload(srv.base_url, args.response_format)
        res = asyncio.run(bench(names, work, args, server_cpu))
    summary = summarise(res)
    report(summary, args)
    per_model = ", ".join(f"{m} {c}" for m, c in sorted(srv.calls.items()))
    print(f"server calls (warm-up included): {sum(srv.calls.values())} ({per_model})")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "summary": summary, **res}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
