"""The store's write throughput, and the time to resume a killed run.

1. **Writes.** ``--decisions`` outcomes of ``--votes`` votes each (one candidate per request,
   so each decision also writes its request and candidate rows) are recorded with
   :meth:`consensus.store.Store.record`, one transaction each, into a fresh SQLite file. The
   baseline, measured in the same run on the same machine, writes the same rows (the same
   columns and JSON blobs, serialised beforehand) with plain ``sqlite3``: one ``INSERT`` of the
   decision, ``executemany`` of its votes, its request and candidate rows, in one transaction
   per decision, with the same pragmas (WAL, ``synchronous=NORMAL``, foreign keys). The two
   alternate over ``--rounds`` rounds (this 2-core machine is shared and noisy); the table gives
   the median decisions/s and the ratio store / baseline (the cost of serialising the outcome
   and of the store's own checks).
2. **Resume.** A real ``consensus run`` of ``--requests`` simulated requests (five judges,
   ``--delay`` seconds per call, ``--concurrency`` in flight) uninterrupted; then the same run
   into another store, SIGKILLed when half its decisions are committed (the store file is
   polled), and ``consensus run --resume``. Printed: wall time of the uninterrupted run, of the
   resume, their ratio (the ideal is about one half plus the fixed start-up cost: Ray, the
   panel), and whether the resumed outputs equal the uninterrupted ones.

Usage::

    .venv/bin/python benchmarks/store.py                  # both parts
    .venv/bin/python benchmarks/store.py --skip-resume    # writes only (no Ray)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consensus.store import Store
from consensus.types import Candidate, Decision, Outcome, Request, Vote


def workload(n: int, n_votes: int) -> list[tuple[Request, Outcome]]:
    out = []
    for i in range(n):
        rid = f"q{i}"
        req = Request(id=rid, prompt=f"prompt {i} " * 8,
                      candidates=(Candidate(id="c1", text=f"answer {i} " * 20),))
        votes = tuple(Vote(judge=f"j{k}", judge_version="v1", request_id=rid, candidate_id="c1",
                           label="accept" if (i + k) % 3 else "reject", confidence=0.8,
                           critique="fine " * 10, latency_s=0.01) for k in range(n_votes))
        dec = Decision(request_id=rid, subject="c1", label="accept", probability=0.8,
                       strategy="majority")
        out.append((req, Outcome(request_id=rid, run_id="bench", action="accept",
                                 accepted_candidate="c1", output=req.candidates[0].text,
                                 decisions=(dec,), votes=votes, latency_s=0.05)))
    return out


def store_writes(path: Path, work: list[tuple[Request, Outcome]]) -> float:
    s = Store(path)
    s.start_run("bench", scenario="bench", strategy="majority", config={})
    t0 = time.perf_counter()
    for req, o in work:
        s.record("bench", o, request=req)
    dt = time.perf_counter() - t0
    s.close()
    return len(work) / dt


def baseline_rows(work: list[tuple[Request, Outcome]]) -> list[tuple]:
    """The rows Store.record writes, serialised beforehand (the baseline's input)."""
    rows = []
    for req, o in work:
        now = time.time()
        dec = ("bench", o.request_id, o.action, o.accepted_candidate, o.reason, o.latency_s,
               o.cost_usd, o.model_dump_json(exclude={"votes"}), now)
        votes = [("bench", v.request_id, v.candidate_id, v.judge, v.judge_version, v.label,
                  v.confidence, v.abstain_kind, v.abstain_reason, v.latency_s, v.cost_usd,
                  v.tokens, v.model_dump_json()) for v in o.votes]
        request = ("bench", req.id, req.prompt, json.dumps({"task": req.task}), now)
        cands = [("bench", req.id, c.id, c.text, c.generator) for c in req.candidates]
        rows.append((dec, votes, request, cands))
    return rows


def baseline_writes(path: Path, rows: list[tuple]) -> float:
    s = Store(path)  # the same schema, created by the store; then plain sqlite3 on it
    s.start_run("bench", scenario="bench", strategy="majority", config={})
    s.close()
    conn = sqlite3.connect(path, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    t0 = time.perf_counter()
    for dec, votes, request, cands in rows:
        with conn:
            conn.execute("INSERT INTO decisions(run_id, request_id, action, accepted_candidate, "
                         "reason, latency_s, cost_usd, outcome, created_at) VALUES "
                         "(?, ?, ?, ?, ?, ?, ?, ?, ?)", dec)
            conn.executemany("INSERT INTO votes(run_id, request_id, candidate_id, judge, "
                             "judge_version, label, confidence, abstain_kind, abstain_reason, "
                             "latency_s, cost_usd, tokens, vote) VALUES "
                             "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", votes)
            conn.execute("INSERT INTO requests(run_id, request_id, prompt, meta, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", request)
            conn.executemany("INSERT INTO candidates(run_id, request_id, candidate_id, text, "
                             "generator) VALUES (?, ?, ?, ?, ?)", cands)
    dt = time.perf_counter() - t0
    conn.close()
    return len(rows) / dt


def writes(args: argparse.Namespace) -> None:
    work = workload(args.decisions, args.votes)
    rows = baseline_rows(work)
    ours, base = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            order = (("store", "base") if k % 2 == 0 else ("base", "store"))
            for which in order:
                path = Path(tmp) / f"{which}{k}.sqlite"
                if which == "store":
                    ours.append(store_writes(path, work))
                else:
                    base.append(baseline_writes(path, rows))
    ratios = [a / b for a, b in zip(ours, base, strict=True)]
    print(f"writes: {args.decisions} decisions x {args.votes} votes, {args.rounds} rounds")
    print(f"  Store.record       {statistics.median(ours):8.0f} decisions/s "
          f"(best {max(ours):.0f})")
    print(f"  plain sqlite3      {statistics.median(base):8.0f} decisions/s "
          f"(best {max(base):.0f})")
    print(f"  ratio store/plain  {statistics.median(ratios):8.2f}")


SCENARIO = """
name: bench_resume
dataset:
  simulate: {{n_items: {n}, prior: {{accept: 0.6, reject: 0.4}}, seed: 5}}
panel:
  - {{name: a, kind: simulated, default_accuracy: 0.85, seed: 1, delay_s: {d}}}
  - {{name: b, kind: simulated, default_accuracy: 0.75, seed: 2, delay_s: {d}}}
  - {{name: c, kind: simulated, default_accuracy: 0.7, seed: 3, delay_s: {d}}}
  - {{name: d, kind: simulated, default_accuracy: 0.65, seed: 4, delay_s: {d}}}
  - {{name: e, kind: simulated, default_accuracy: 0.6, seed: 5, delay_s: {d}}}
strategy: majority
policy: {{quorum: 3}}
concurrency: {c}
"""


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "consensus.cli.app", "run", *map(str, args)]


def committed(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
    except sqlite3.Error:
        return 0


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def essentials(out: Path) -> dict[str, tuple]:
    rows = [json.loads(x) for x in (out / "decisions.jsonl").read_text().splitlines()]
    return {r["request_id"]: (r["action"], r["accepted_candidate"], r["output"],
                              tuple((d["subject"], d["label"]) for d in r["decisions"]))
            for r in rows}


def resume(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sc = root / "bench_resume.yaml"
        sc.write_text(SCENARIO.format(n=args.requests, d=args.delay, c=args.concurrency))
        whole = timed(cli(sc, "--out", root / "whole", "--store", root / "whole.sqlite"))
        store = root / "killed.sqlite"
        t0 = time.perf_counter()
        proc = subprocess.Popen(cli(sc, "--out", root / "killed", "--store", store), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        while committed(store) < args.requests // 2 and proc.poll() is None:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        to_kill = time.perf_counter() - t0
        kept = committed(store)
        time.sleep(1.0)
        again = timed(cli(sc, "--out", root / "killed", "--store", store, "--resume"))
        same = essentials(root / "killed") == essentials(root / "whole")
    print(f"resume: {args.requests} requests, 5 simulated judges, {args.delay * 1000:.0f} ms a "
          f"call, {args.concurrency} in flight")
    print(f"  uninterrupted run        {whole:6.1f} s")
    print(f"  killed after             {to_kill:6.1f} s ({kept} committed)")
    print(f"  resume                   {again:6.1f} s")
    print(f"  ratio resume/whole       {again / whole:6.2f}")
    print(f"  resumed outputs equal the uninterrupted run's: {same}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--decisions", type=int, default=2000)
    p.add_argument("--votes", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--delay", type=float, default=0.01)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--skip-resume", action="store_true")
    args = p.parse_args()
    writes(args)
    if not args.skip_resume:
        resume(args)


if __name__ == "__main__":
    main()
