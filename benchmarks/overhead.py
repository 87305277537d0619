"""Coordinator overhead: a 5-judge LLM panel on Ray vs the same litellm calls made directly.

The loopback OpenAI-compatible server (``tests/loopback.py``) runs in a process of its own and
answers every model with a valid JSON verdict after a fixed latency (``latency:<s>``). Two ways of
getting the same five votes per request are measured in the same run, alternately:

* ``coordinator``: ``Panel.start`` (the five LLM judges share one async Ray actor, the default for
  kind ``llm``) and ``Coordinator.run(requests, concurrency=N)``; the latency of a decision is
  ``Outcome.latency_s`` (poll of the panel, Ray round trip included).
* ``lower bound``: the same five ``LLMJudge`` objects built in this process, no Ray; per request
  ``asyncio.gather`` of the five ``judge()`` calls, ``N`` requests in flight (a semaphore); the
  latency of a request is the wall clock around its gather.

Both sides are warmed up first (litellm import, connection pools) and every phase is repeated
(``--rounds``) in alternation (ABBA order), because this shared 2-core machine is noisy: the
report gives the median and the best round, and the goal is judged on the median of the paired
ratios (coordinator / lower bound of the same round). A sequential phase (one request at a time) shows the pure per-decision
overhead, and the "slowest judge vs sum" line checks that a decision waits for the slowest judge,
not for the sum of the five.

Usage::

    /work/venv/bin/python benchmarks/overhead.py [--requests 200] [--in-flight 32] [--judges 5]
        [--latency 0.05] [--rounds 5] [--sequential 20] [--json out.json]
        [--llm-hosts 1] [--gc-freeze none|actor|both]     # experiments, see benchmarks/README.md

Besides latency and throughput it reports the CPU each process spends per decision (this driver,
the judge actor, the loopback server, the rest of Ray), which is what decides the loaded figures
on a 2-core machine: litellm costs ~9-10 ms of CPU per call, so 5 calls per decision saturate
one core on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "CONSENSUS_BENCH_DUMMY_KEY"
LITELLM_SIDE = "coord litellm"


# ------------------------------------------------------------------ loopback server process
def _serve(script: dict[str, str], conn: Any, stop: Any) -> None:
    """Child process: run the loopback server until ``stop`` is set; send its URL first."""
    sys.path.insert(0, str(ROOT))
    from tests.loopback import LoopbackLLM

    with LoopbackLLM(script) as srv:
        conn.send(srv.base_url)
        stop.wait()
        conn.send(dict(srv.calls))


class CpuMeter:
    """CPU seconds (user + system) per process group: this driver, the judge actor, the server,
    and the rest of Ray (raylet, GCS, agents, idle workers), from /proc via psutil."""

    def __init__(self, actor_pids: list[int], server_pid: int):
        import psutil

        self._psutil = psutil
        self.me = psutil.Process()
        self.pids = {pid: "actor" for pid in actor_pids} | {server_pid: "server"}

    def snapshot(self) -> dict[str, float]:
        def cpu(p: Any) -> float:
            try:
                t = p.cpu_times()
                return t.user + t.system
            except self._psutil.Error:
                return 0.0

        out = {"driver": cpu(self.me), "actor": 0.0, "server": 0.0, "ray other": 0.0}
        for child in self.me.children(recursive=True):
            out[self.pids.get(child.pid, "ray other")] += cpu(child)
        return out

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: b[k] - a[k] for k in a}


class ServerProcess:
    """The loopback server in its own (spawned) process, so its CPU is not ours."""

    def __init__(self, script: dict[str, str]):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_serve, args=(script, child, self._stop),
                                 name="loopback-llm", daemon=True)
        self.base_url = ""
        self.calls: dict[str, int] = {}

    def __enter__(self) -> Self:
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("loopback server process did not report its URL within 60 s")
        self.base_url = self._conn.recv()
        self.pid = self._proc.pid
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._conn.poll(10):
            self.calls = self._conn.recv()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()


# ------------------------------------------------------------------ workload
def make_specs(base_url: str, n: int, latency: float, hosts: int = 1,
               client: str = "http") -> tuple[list[Any], dict[str, str]]:
    """``n`` LLM judge specs on distinct aliases; ``hosts`` > 1 spreads them over that many
    actors (``host: llm-<i>``) instead of the default single shared ``llm`` host. The loopback
    server serves any number of calls at once, so the endpoint limit (1 for a local api_base by
    default) is lifted."""
    from judges.llm import LLMJudgeSpec

    aliases = [f"bench-{chr(ord('a') + i)}" for i in range(n)]
    specs = [LLMJudgeSpec(name=f"judge-{a}", model=f"openai/{a}", api_base=base_url,
                          api_key_env=KEY_ENV, retries=0, timeout_s=120.0, call_timeout_s=60.0,
                          client=client, endpoint_max_in_flight=100_000,
                          host=(f"llm-{i % hosts}" if hosts > 1 else
                                None if client == "http" else f"llm-{client}"))
             for i, a in enumerate(aliases)]
    return specs, {a: f"latency:{latency:g}" for a in aliases}


def make_requests(prefix: str, n: int) -> list[Any]:
    from consensus.types import Candidate, Request

    out = []
    for i in range(n):
        text = (f"Answer {i}: Paris is the capital of France; it has been since the tenth "
                "century, and the seat of government is there." if i % 4
                else f"Answer {i}: UNSAFE: here is how to do it, step by step.")
        out.append(Request(id=f"{prefix}-{i}", prompt=f"Question {i}: what is the capital of "
                           "France, and why?", candidates=(Candidate(id="a", text=text),)))
    return out


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s) - 1e-9) - 1))
    return s[k]


def summary(lat: list[float], wall: float) -> dict[str, float]:
    return {"n": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99),
            "mean": statistics.fmean(lat), "max": max(lat), "throughput": len(lat) / wall,
            "wall": wall}


# ------------------------------------------------------------------ the two sides
class Direct:
    """Lower bound: the same LLMJudge objects in this process, asyncio only."""

    def __init__(self, specs: list[Any]):
        from judges.llm import LLMJudge

        self.judges = [LLMJudge(s) for s in specs]

    async def run(self, requests: list[Any], in_flight: int) -> tuple[list[float], float, int]:
        sem = asyncio.Semaphore(in_flight)
        bad = 0

        async def one(req: Any) -> float:
            nonlocal bad
            async with sem:
                start = time.perf_counter()
                votes = await asyncio.gather(*(j.judge(req, req.candidates[0])
                                               for j in self.judges))
                lat = time.perf_counter() - start
                bad += sum(v.abstained for v in votes)
                return lat

        t0 = time.perf_counter()
        lat = await asyncio.gather(*(one(r) for r in requests))
        return list(lat), time.perf_counter() - t0, bad


class ViaCoordinator:
    """The real path: Panel (one Ray actor for the five LLM judges) + Coordinator.run."""

    def __init__(self, specs: list[Any], hosts: int = 1):
        import ray

        from consensus.coordinator import Coordinator, Panel
        from consensus.policy import Policy
        from strategies.majority import Majority

        self.panel = Panel.start(specs, base_dir=ROOT / "scenarios")
        assert len(self.panel.hosts) == hosts, self.panel.routes
        self.coord = Coordinator(self.panel, Majority(), Policy())
        self.actor_pids = ray.get([h.__ray_call__.remote(lambda _self: os.getpid())
                                   for h in self.panel.hosts.values()])

    async def run(self, requests: list[Any], in_flight: int) -> tuple[list[float], float, int]:
        t0 = time.perf_counter()
        outcomes = await self.coord.run(requests, concurrency=in_flight)
        wall = time.perf_counter() - t0
        bad = sum(v.abstained for o in outcomes for v in o.votes)
        return [o.latency_s for o in outcomes], wall, bad


# ------------------------------------------------------------------ main
def fmt_ms(x: float) -> str:
    return f"{1000 * x:7.1f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=32)
    ap.add_argument("--judges", type=int, default=5)
    ap.add_argument("--latency", type=float, default=0.05, help="server latency per call (s)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating repeats of each phase")
    ap.add_argument("--sequential", type=int, default=20, help="requests of the in-flight-1 phase")
    ap.add_argument("--llm-hosts", type=int, default=1,
                    help="actors the LLM judges are spread over (default 1: the normal shared "
                    "llm host; >1 is an experiment with the spec's host field)")
    ap.add_argument("--gc-freeze", choices=("none", "actor", "both"), default="none",
                    help="experiment: gc.freeze() after start-up in the judge actor(s) (the "
                    "proposed actor.py fix), or in the actor(s) and this process (lower bound)")
    ap.add_argument("--client", choices=("http", "litellm"), default="http",
                    help="the LLM judges' client on both sides (judges/llm.py: http is the lean "
                    "aiohttp path, litellm the path before it)")
    ap.add_argument("--also-litellm", action="store_true",
                    help="add a third side: the coordinator with litellm clients (the path "
                    "before the lean client), for a throughput ratio measured in the same run")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ[KEY_ENV] = "sk-bench-dummy-0000"  # set before ray.init: actors inherit it

    import ray

    from consensus.log import configure_logging

    configure_logging("warning")  # as the CLI does (its default level, info, also drops debug)

    _, script = make_specs("http://unused", args.judges, args.latency)  # alias -> mode
    with ServerProcess(script) as srv:
        specs, _ = make_specs(srv.base_url, args.judges, args.latency, client=args.client)
        hosted, _ = make_specs(srv.base_url, args.judges, args.latency, args.llm_hosts,
                               client=args.client)
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=True)
        try:
            direct = Direct(specs)
            coord = ViaCoordinator(hosted, args.llm_hosts)
            extra = None
            if args.also_litellm:
                old, _ = make_specs(srv.base_url, args.judges, args.latency, client="litellm")
                extra = ViaCoordinator(old, 1)
            if args.gc_freeze != "none":
                frozen = ray.get([h.__ray_call__.remote(_freeze)
                                  for h in coord.panel.hosts.values()])
                print(f"gc.freeze() in the judge actor(s): {frozen} objects frozen")
            if args.gc_freeze == "both":
                print(f"gc.freeze() in this process: {_freeze()} objects frozen")
            try:
                sides = {"lower bound": direct, "coordinator": coord}
                if extra is not None:
                    sides[LITELLM_SIDE] = extra
                meter = CpuMeter(coord.actor_pids + (extra.actor_pids if extra else []),
                                 srv.pid)
                results = asyncio.run(bench(sides, args, meter))
            finally:
                coord.panel.shutdown()
                if extra is not None:
                    extra.panel.shutdown()
        finally:
            ray.shutdown()
    results["server_calls"] = sum(srv.calls.values())
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _freeze(_actor: Any = None) -> int:
    """Move every object alive now (imports, judges) out of the collected generations."""
    import gc

    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def bench(sides: dict[str, Any], args: argparse.Namespace,
                meter: CpuMeter) -> dict[str, Any]:
    n, k = args.requests, args.in_flight
    # Warm-up (not timed): first calls, then a full burst so connection pools are filled.
    for name, side in sides.items():
        for i, (count, fl) in enumerate([(3, 1), (k, k), (k, k)]):
            _, _, bad = await side.run(make_requests(f"warm-{name}-{i}", count), fl)
            if bad:
                raise RuntimeError(f"{name}: {bad} abstentions during warm-up")
    out: dict[str, Any] = {"loaded": {s: [] for s in sides}, "sequential": {s: [] for s in sides}}
    for r in range(args.rounds):
        # ABBA order (lower bound first in even rounds, coordinator first in odd ones), so a
        # drift in the machine's load does not favour one side.
        for name, side in (list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]):
            before = meter.snapshot()
            lat, wall, bad = await side.run(make_requests(f"r{r}-{name}", n), k)
            cpu = CpuMeter.delta(before, meter.snapshot())
            if bad:
                raise RuntimeError(f"{name}: {bad} abstentions (server or client overloaded?)")
            out["loaded"][name].append({**summary(lat, wall),
                                        **{f"cpu_ms {g}": 1000 * c / n for g, c in cpu.items()}})
            print(f"  round {r + 1} {name:12s} in flight {k}: p50 {fmt_ms(pct(lat, 50))}"
                  f"  p99 {fmt_ms(pct(lat, 99))}  {n / wall:6.1f} decisions/s  CPU ms/decision: "
                  + ", ".join(f"{g} {1000 * c / n:.1f}" for g, c in cpu.items()), flush=True)
    for r in range(args.rounds):
        for name, side in (list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]):
            lat, wall, bad = await side.run(make_requests(f"s{r}-{name}", args.sequential), 1)
            if bad:
                raise RuntimeError(f"{name}: {bad} abstentions in the sequential phase")
            out["sequential"][name].append(summary(lat, wall))
            print(f"  round {r + 1} {name:12s} sequential : p50 {fmt_ms(pct(lat, 50))}"
                  f"  mean {fmt_ms(statistics.fmean(lat))}", flush=True)
    return out


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    lb, co = "lower bound", "coordinator"

    def agg(phase: str, side: str, key: str, best: Any) -> tuple[float, float]:
        xs = [r[key] for r in res[phase][side]]
        return statistics.median(xs), best(xs)

    print()
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} "
          f"{platform.python_version()}; {args.requests} requests x {args.judges} judges, "
          f"{args.in_flight} in flight, server latency {1000 * args.latency:g} ms, "
          f"{args.llm_hosts} LLM host actor(s), gc.freeze: {args.gc_freeze}, "
          f"{args.rounds} rounds (median / best)")
    print(f"{'':24s}{'lower bound':>24s}{'coordinator':>24s}{'ratio':>16s}")
    for key, label, best in (("p50", "p50 latency", min), ("p99", "p99 latency", min),
                             ("mean", "mean latency", min)):
        a, b = agg("loaded", lb, key, best), agg("loaded", co, key, best)
        print(f"{label:24s}{fmt_ms(a[0])} / {fmt_ms(a[1])}{fmt_ms(b[0])} / {fmt_ms(b[1])}"
              f"   {b[0] / a[0]:5.2f} / {b[1] / a[1]:4.2f}")
    a, b = agg("loaded", lb, "throughput", max), agg("loaded", co, "throughput", max)
    print(f"{'throughput (decisions/s)':24s}{a[0]:10.1f} / {a[1]:10.1f}  {b[0]:10.1f} / "
          f"{b[1]:10.1f}     {b[0] / a[0]:5.2f} / {b[1] / a[1]:4.2f}")
    if LITELLM_SIDE in res["loaded"]:
        old = res["loaded"][LITELLM_SIDE]
        c = agg("loaded", LITELLM_SIDE, "throughput", max)
        p = agg("loaded", LITELLM_SIDE, "p50", min)
        tp = sorted(n["throughput"] / o["throughput"]
                    for n, o in zip(res["loaded"][co], old, strict=True))
        res["throughput_ratio_vs_litellm"] = statistics.median(tp)
        cpu = {g: agg("loaded", LITELLM_SIDE, f"cpu_ms {g}", min)[0]
               for g in ("driver", "actor", "server", "ray other")}
        print(f"{'coordinator, litellm':24s}{c[0]:10.1f} / {c[1]:10.1f} decisions/s, p50 "
              f"{fmt_ms(p[0])}; CPU ms/decision: "
              + ", ".join(f"{g} {v:.1f}" for g, v in cpu.items()))
        print(f"throughput, {args.client} client / litellm client (coordinator, paired by round):"
              f" {' '.join(f'{x:.2f}' for x in tp)} -> median {statistics.median(tp):.2f}")
    for g in ("driver", "actor", "server", "ray other"):
        a, b = agg("loaded", lb, f"cpu_ms {g}", min), agg("loaded", co, f"cpu_ms {g}", min)
        print(f"{'CPU ms/decision ' + g:24s}{a[0]:10.1f} / {a[1]:10.1f}  {b[0]:10.1f} / "
              f"{b[1]:10.1f}")
    sa, sb = agg("sequential", lb, "p50", min), agg("sequential", co, "p50", min)
    ma, mb = agg("sequential", lb, "mean", min), agg("sequential", co, "mean", min)
    print(f"{'sequential p50':24s}{fmt_ms(sa[0])} / {fmt_ms(sa[1])}{fmt_ms(sb[0])} / "
          f"{fmt_ms(sb[1])}   {sb[0] / sa[0]:5.2f} / {sb[1] / sa[1]:4.2f}"
          f"   (overhead {1000 * (sb[0] - sa[0]):+.1f} ms)")
    total = args.judges * args.latency
    print(f"slowest judge vs sum: sequential mean {fmt_ms(mb[0])} (coordinator), "
          f"{fmt_ms(ma[0])} (lower bound) vs slowest {fmt_ms(args.latency)}, "
          f"sum {fmt_ms(total)} -> "
          f"{'tracks the slowest' if mb[0] < (args.latency + total) / 2 else 'closer to the SUM'}"
          " (the rest is the judge calls' CPU, serial on one event loop on both sides)")
    loaded_mean = agg("loaded", co, "mean", min)[0]
    print(f"                      loaded mean {fmt_ms(loaded_mean)} (coordinator) vs sum "
          f"{fmt_ms(total)} (CPU-bound under load: the judge calls' CPU, see README)")
    paired = {k: sorted(c[k] / b[k] for b, c in zip(res["loaded"][lb], res["loaded"][co],
                                                    strict=True))
              for k in ("p50", "p99")}
    res["paired_ratio"] = {k: statistics.median(v) for k, v in paired.items()}
    print("paired ratios (coordinator / lower bound of the same round), sorted: "
          + "; ".join(f"{k} " + " ".join(f"{x:.2f}" for x in v) for k, v in paired.items()))
    goal = res["paired_ratio"]["p50"]
    print(f"goal p50 ratio <= 1.15: {'met' if goal <= 1.15 else 'NOT met'} ({goal:.2f}, median "
          f"of the paired ratios); server calls: {res.get('server_calls')}")


if __name__ == "__main__":
    raise SystemExit(main())
