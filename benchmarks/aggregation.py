"""Aggregation benchmark: our strategies next to crowd-kit, on real votes and on simulated panels.

Sections (figures go to ``benchmarks/README.md``, "## Aggregation"):

1. Accuracy of majority vote and Dawid–Skene, ours and crowd-kit's, on RTE, TEMP (crowd workers)
   and the eight LLMBar sets (130 judge-order columns as workers, labels "1"/"2").
2. Dawid–Skene wall time on a synthetic 100,000 items x 10 judges x 2 labels, ours and
   crowd-kit's, with the ratio.
3. The LLMBar protocol: per set, 20% of the items carry gold, 80% are scored; mean over
   ``--splits`` random splits of calibrated, the best single judge chosen on the gold, majority,
   log-odds and a plain L2 logistic regression, next to reference figures.
4. Simulated panels (``consensus.simulation``) with 20% gold: calibrated and Dawid–Skene against
   the Bayes-optimal accuracy computed exactly from the true parameters.

Run from the repository root (crowd-kit is optional: ``pip install crowd-kit``; it is never a
dependency of the package)::

    python benchmarks/aggregation.py [--data DIR] [--splits 50] [--sims 20] [--json out.json]

``--data`` is ``../shared/data`` relative to the repository root by default (the layout with
``crowd/`` and ``llmbar/``); the normalised copies in ``scenarios/data`` are read too.

The strategies run single-threaded BLAS (``OPENBLAS_NUM_THREADS=1`` unless set): their linear
algebra is small, and on a shared 2-core machine BLAS threads only add hand-off waits.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS

import argparse
import csv
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consensus.simulation import JudgeModel, PanelModel, panel
from consensus.types import Ballot, Vote
from strategies._matrix import fit_logistic, one_hot, vote_matrix
from strategies.calibrated import Calibrated
from strategies.dawid_skene import DawidSkene, _em, dawid_skene_em
from strategies.log_odds import LogOdds
from strategies.majority import Majority

LLMBAR_SETS = ("Natural", "Adversarial/Neighbor", "Adversarial/GPTInst", "Adversarial/GPTOut",
               "Adversarial/Manual", "MT-Bench", "FairEval", "LLMEval^2")
REFERENCE = {  # plain L2 logistic regression / best single judge on gold / majority
    "Natural": (0.948, 0.902, 0.933), "Adversarial/Neighbor": (0.927, 0.831, 0.456),
    "Adversarial/GPTInst": (0.934, 0.873, 0.526), "Adversarial/GPTOut": (0.676, 0.616, 0.616),
    "Adversarial/Manual": (0.848, 0.785, 0.605), "MT-Bench": (0.773, 0.791, 0.773),
    "FairEval": (0.647, 0.674, 0.662), "LLMEval^2": (0.748, 0.730, 0.735),
}


class Dataset(NamedTuple):
    """Items with gold and votes: ``items[i] = (id, gold, {judge: label or None})``."""

    name: str
    labels: tuple[str, ...]
    items: list[tuple[str, str, dict[str, str | None]]]

    def ballots(self) -> list[Ballot]:
        subject = "*" if self.labels == ("1", "2") else "a"
        out = []
        for rid, gold, votes in self.items:
            vs = tuple(
                Vote(judge=j, request_id=rid, candidate_id=subject, label=lab) if lab else
                Vote.abstain(judge=j, request_id=rid, candidate_id=subject, kind="unparseable",
                             reason="no parsable verdict")
                for j, lab in sorted(votes.items()))
            out.append(Ballot(request_id=rid, subject=subject, labels=self.labels, votes=vs,
                              panel_size=len(vs), gold=gold))
        return out


# --- loading (csv/json only) ---------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def load_crowd(data: Path, name: str) -> Dataset:
    """RTE or TEMP from ``crowd/<name>_*.csv`` or ``<name>_*`` of scenarios/data."""
    if (data / "crowd").is_dir():
        truth = {r["question"]: r["truth"] for r in read_csv(data / "crowd" / f"{name}_truth.csv")}
        votes: dict[str, dict[str, str | None]] = {q: {} for q in truth}
        for r in read_csv(data / "crowd" / f"{name}_answer.csv"):
            votes.setdefault(r["question"], {})[f"w{r['worker']}"] = r["answer"]
        items = [(f"{name}-{q}", truth[q], votes[q]) for q in sorted(truth, key=int)]
        return Dataset(name.upper(), ("0", "1"), items)
    requests = read_jsonl(data / f"{name}_requests.jsonl")
    votes = {r["id"]: {} for r in requests}
    for r in read_csv(data / f"{name}_votes.csv"):
        votes[r["request_id"]][r["judge"]] = r["label"] or None
    items = [(r["id"], r["gold"]["a"], votes[r["id"]]) for r in requests]
    return Dataset(name.upper(), ("accept", "reject"), items)


def load_llmbar(data: Path) -> dict[str, Dataset]:
    """The eight LLMBar sets; judge columns ``<config>`` and ``<config>@swap``."""
    gold: dict[str, str] = {}
    votes: dict[str, dict[str, str | None]] = {}
    if (data / "llmbar").is_dir():
        for r in read_jsonl(data / "llmbar" / "items.jsonl"):
            gold[f"{r['set']}#{r['item']}"] = str(r["label"])
        for r in read_csv(data / "llmbar" / "votes.csv"):
            judge = r["judge"] + ("@swap" if r["swap"] == "true" else "")
            votes.setdefault(f"{r['set']}#{r['item']}", {})[judge] = r["winner"] or None
    else:
        for r in read_jsonl(data / "llmbar_requests.jsonl"):
            gold[r["id"]] = r["gold"]["*"]
        for r in read_csv(data / "llmbar_votes.csv"):
            if r["label"] or "no_record" not in r.get("reason", ""):
                votes.setdefault(r["request_id"], {})[r["judge"]] = r["label"] or None
    out = {}
    for s in LLMBAR_SETS:
        ids = sorted((i for i in gold if i.rsplit("#", 1)[0] == s),
                     key=lambda i: int(i.rsplit("#", 1)[1]))
        out[s] = Dataset(s, ("1", "2"), [(i, gold[i], votes.get(i, {})) for i in ids])
    return out


# --- section 1: majority and Dawid–Skene, ours and crowd-kit's ------------------------------------


def crowdkit() -> Any | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crowdkit.aggregation as ck
        return ck
    except ImportError:
        return None


def crowdkit_frame(ds: Dataset) -> Any:
    import pandas as pd  # crowd-kit's input format; benchmark only

    rows = [(rid, j, lab) for rid, _, votes in ds.items for j, lab in votes.items() if lab]
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def accuracy_of(strategy: Any, ballots: list[Ballot]) -> float:
    """Share of ``ballots`` whose decided label equals their gold."""
    return float(np.mean([strategy.aggregate(b).label == b.gold for b in ballots]))


def section_real(datasets: list[Dataset]) -> list[dict[str, Any]]:
    ck = crowdkit()
    rows = []
    for ds in datasets:
        ballots = ds.ballots()
        row: dict[str, Any] = {"data": ds.name, "items": len(ballots)}
        row["majority"] = accuracy_of(Majority(tie_rule="random"), ballots)
        t = time.perf_counter()
        dsk = DawidSkene().fit([b.model_copy(update={"gold": None}) for b in ballots])
        row["ds"] = accuracy_of(dsk, ballots)
        row["ds_s"] = time.perf_counter() - t
        if ck is not None:
            frame = crowdkit_frame(ds)
            gold = {rid: g for rid, g, _ in ds.items}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mv = ck.MajorityVote(default_skill=1.0).fit_predict(frame)
                t = time.perf_counter()
                cds = ck.DawidSkene(n_iter=100).fit_predict(frame)
                row["ck_ds_s"] = time.perf_counter() - t
            row["ck_majority"] = float(np.mean([mv.get(r) == g for r, g in gold.items()]))
            row["ck_ds"] = float(np.mean([cds.get(r) == g for r, g in gold.items()]))
        rows.append(row)
    return rows


# --- section 2: speed ---------------------------------------------------------------------------


def section_speed(repeats: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n, n_j = 100_000, 10
    truth = rng.integers(0, 2, n)
    acc = rng.uniform(0.55, 0.9, n_j)
    codes = np.where(rng.random((n, n_j)) < acc, truth[:, None], 1 - truth[:, None])
    out: dict[str, Any] = {"items": n, "judges": n_j}

    def best(f: Callable[[], Any]) -> tuple[float, Any]:
        times, result = [], None
        for _ in range(repeats):
            t = time.perf_counter()
            result = f()
            times.append(time.perf_counter() - t)
        return min(times), result

    out["ours_s"], r = best(lambda: dawid_skene_em(codes, 2))
    out["ours_acc"] = float((r.posteriors.argmax(1) == truth).mean())
    out["ours_iter"] = r.n_iter
    gold, opts = np.full(n, -1), np.full(n, 2)
    out["ours_nocompress_s"], r = best(
        lambda: _em(codes, 2, gold, opts, None, None, 100, 1e-6, 0.01, "full"))
    out["ours_nocompress_acc"] = float((r.posteriors.argmax(1) == truth).mean())
    ck = crowdkit()
    if ck is not None:
        import pandas as pd

        frame = pd.DataFrame({"task": np.repeat(np.arange(n), n_j),
                              "worker": np.tile(np.arange(n_j), n), "label": codes.ravel()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["ck_s"], pred = best(lambda: ck.DawidSkene(n_iter=100).fit_predict(frame))
        out["ck_acc"] = float((pred.sort_index().to_numpy() == truth).mean())
        out["ratio"] = out["ck_s"] / out["ours_s"]
        out["ratio_nocompress"] = out["ck_s"] / out["ours_nocompress_s"]
    return out


# --- section 3: the LLMBar protocol --------------------------------------------------------------


def best_single_judge(m: Any, gold_rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Predictions of the judge most accurate on the gold (its abstentions: majority)."""
    codes = m.codes
    right = (codes[gold_rows] == y[:, None]).sum(0)
    best = int(np.lexsort((-(codes[gold_rows] >= 0).sum(0), -right))[0])
    counts = np.stack([(codes == c).sum(1) for c in range(m.n_labels)], 1)
    return np.where(codes[:, best] >= 0, codes[:, best], counts.argmax(1))


def section_llmbar(sets: dict[str, Dataset], n_splits: int, quiet: bool) -> list[dict[str, Any]]:
    rows = []
    for name, ds in sets.items():
        ballots = ds.ballots()
        n = len(ballots)
        m_all = vote_matrix(ballots)
        y_all = m_all.gold
        x = one_hot(m_all.codes, 2).toarray()
        acc: dict[str, list[float]] = {k: [] for k in
                                       ("calibrated", "best_judge", "majority", "log_odds", "lr")}
        methods: dict[str, int] = {}
        t0 = time.perf_counter()
        for split in range(n_splits):
            perm = np.random.default_rng(split).permutation(n)
            n_gold = round(0.2 * n)
            gold_rows, scored = np.sort(perm[:n_gold]), np.sort(perm[n_gold:])
            keep = set(gold_rows.tolist())
            run = [b if i in keep else b.model_copy(update={"gold": None})
                   for i, b in enumerate(ballots)]
            cal = Calibrated().fit(run)
            methods[cal.method_.split("(")[0]] = methods.get(cal.method_.split("(")[0], 0) + 1
            lo = LogOdds().fit(run)
            maj = Majority(tie_rule="random")
            sc = [ballots[i] for i in scored]
            acc["calibrated"].append(accuracy_of(cal, sc))
            acc["log_odds"].append(accuracy_of(lo, sc))
            acc["majority"].append(accuracy_of(maj, sc))
            y = y_all[gold_rows]
            pred = best_single_judge(m_all, gold_rows, y)
            acc["best_judge"].append(float((pred[scored] == y_all[scored]).mean()))
            # same objective as scikit-learn's LogisticRegression(C=1) on the one-hot votes
            w, b = fit_logistic(x[gold_rows], np.eye(2)[y], 0.5)
            z = x[scored] @ w + b
            acc["lr"].append(float((z.argmax(1) == y_all[scored]).mean()))
        row: dict[str, Any] = {"set": name, "items": n, "gold": round(0.2 * n),
                               "columns": len(m_all.judges), "splits": n_splits,
                               "seconds": time.perf_counter() - t0, "methods": methods}
        for k, v in acc.items():
            row[k] = float(np.mean(v))
            row[k + "_se"] = float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
        rows.append(row)
        if not quiet:
            print(f"  {name:22s} calibrated {row['calibrated']:.3f} "
                  f"({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return rows


# --- section 4: simulated panels ------------------------------------------------------------------


def scenarios() -> dict[str, PanelModel]:
    herd = tuple(JudgeModel(f"g{i}", 0.7, abstain=0.1, group="g", copy_prob=0.8)
                 for i in range(4))
    return {
        "independent (7 judges, 0.55-0.85, 10% abstain)":
            PanelModel(judges=panel([0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85], abstain=0.1)),
        "herd of 4 (shared latent right 55%) + 3 independent + adversary":
            PanelModel(judges=(*panel([0.75, 0.7, 0.65], abstain=0.1, prefix="i"), *herd,
                               JudgeModel("adv", 0.8, abstain=0.1, adversarial=True)),
                       latent_accuracy={"g": 0.55}),
        "herd of 6 (shared latent right 30%) + 2 independent + adversary":
            PanelModel(judges=(JudgeModel("i0", 0.8, abstain=0.2),
                               JudgeModel("i1", 0.65, abstain=0.05),
                               *(JudgeModel(f"g{i}", 0.75, abstain=0.1, group="g", copy_prob=0.6)
                                 for i in range(6)),
                               JudgeModel("adv", 0.7, abstain=0.1, adversarial=True)),
                       latent_accuracy={"g": 0.3}),
        "3 labels: herd of 4 + 3 independent + adversary (extra)":
            PanelModel(n_labels=3, prior=(0.5, 0.3, 0.2), judges=(
                *(JudgeModel(f"i{i}", a, abstain=0.1) for i, a in enumerate((0.7, 0.6, 0.55))),
                *(JudgeModel(f"g{i}", 0.65, abstain=0.1, group="g", copy_prob=0.7)
                  for i in range(4)),
                JudgeModel("adv", 0.7, abstain=0.1, adversarial=True)),
                latent_accuracy={"g": 0.4}),
    }


def section_sims(n_items: int, n_seeds: int) -> list[dict[str, Any]]:
    rows = []
    for name, model in scenarios().items():
        labels = ("accept", "reject") if model.n_labels == 2 else ("x", "y", "z")
        acc: dict[str, list[float]] = {k: [] for k in ("bayes", "calibrated", "ds", "majority")}
        for seed in range(n_seeds):
            truth, codes = model.sample(n_items, seed)
            gold_rows = set(np.random.default_rng(seed).permutation(n_items)[: n_items // 5]
                            .tolist())
            items = [(f"s{i}", labels[truth[i]],
                      {j: (labels[c] if c >= 0 else None) for j, c in zip(model.names, row)})
                     for i, row in enumerate(codes)]
            ballots = Dataset(name, labels, items).ballots()
            run = [b if i in gold_rows else b.model_copy(update={"gold": None})
                   for i, b in enumerate(ballots)]
            no_gold = [b.model_copy(update={"gold": None}) for b in ballots]
            scored = [i for i in range(n_items) if i not in gold_rows]
            post = model.bayes_posterior(codes)
            acc["bayes"].append(float((post.argmax(1) == truth)[scored].mean()))
            cal = Calibrated().fit(run)
            dsk = DawidSkene().fit(no_gold)
            maj = Majority(tie_rule="random")
            sc = [ballots[i] for i in scored]
            acc["calibrated"].append(accuracy_of(cal, sc))
            acc["ds"].append(accuracy_of(dsk, sc))
            acc["majority"].append(accuracy_of(maj, sc))
        row: dict[str, Any] = {"scenario": name, "items": n_items, "seeds": n_seeds}
        for k, v in acc.items():
            row[k] = float(np.mean(v))
        gaps = np.array(acc["bayes"]) - np.array(acc["calibrated"])
        row["calibrated_gap_se"] = float(gaps.std(ddof=1) / np.sqrt(len(gaps)))
        rows.append(row)
    return rows


# --- report -------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def report(res: dict[str, Any]) -> str:
    """The figures as Markdown tables."""
    out: list[str] = []
    add = out.append
    add("### Majority vote and Dawid–Skene (all items, no gold)\n")
    add("| data | items | majority (ours) | majority (crowd-kit) | DS (ours) | DS (crowd-kit) "
        "| DS time ours / crowd-kit |")
    add("|---|---|---|---|---|---|---|")
    for r in res["real"]:
        ck_time = f"{r['ck_ds_s'] * 1000:.0f} ms" if "ck_ds_s" in r else "-"
        add(f"| {r['data']} | {r['items']} | {pct(r['majority'])} | {pct(r.get('ck_majority'))} "
            f"| {pct(r['ds'])} | {pct(r.get('ck_ds'))} | {r['ds_s'] * 1000:.0f} ms / {ck_time} |")
    s = res["speed"]
    add("\n### Dawid–Skene speed: 100,000 items x 10 judges x 2 labels (best of 3)\n")
    add("| | time | accuracy | EM iterations |")
    add("|---|---|---|---|")
    add(f"| ours (`dawid_skene_em`, vote patterns grouped) | {s['ours_s'] * 1000:.0f} ms "
        f"| {s['ours_acc']:.4f} | {s['ours_iter']} |")
    add(f"| ours, one row per item | {s['ours_nocompress_s'] * 1000:.0f} ms "
        f"| {s['ours_nocompress_acc']:.4f} | |")
    if "ck_s" in s:
        add(f"| crowd-kit `DawidSkene(n_iter=100)` | {s['ck_s'] * 1000:.0f} ms "
            f"| {s['ck_acc']:.4f} | |")
        add(f"\nSpeed-up: **{s['ratio']:.0f}x** (one row per item: {s['ratio_nocompress']:.1f}x).")
    splits = res["llmbar"][0]["splits"]
    add(f"\n### LLMBar: 20% gold, 80% scored, mean of {splits} splits (± standard error)\n")
    add("| set | items | calibrated | best judge on gold | majority | log-odds | plain L2 LR "
        "| reference LR / best / majority | target | met |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for r in res["llmbar"]:
        ref = REFERENCE[r["set"]]
        target = max(ref) - 0.01
        if r["set"] in ("Adversarial/Neighbor", "Adversarial/GPTInst"):
            target = max(target, 0.93)
        met = "yes" if r["calibrated"] >= target else "NO"
        add(f"| {r['set']} | {r['items']} | **{r['calibrated']:.3f}** ±{r['calibrated_se']:.3f} "
            f"| {r['best_judge']:.3f} | {r['majority']:.3f} | {r['log_odds']:.3f} "
            f"| {r['lr']:.3f} | {ref[0]:.3f} / {ref[1]:.3f} / {ref[2]:.3f} | >= {target:.3f} "
            f"| {met} |")
    sims = res["sims"]
    add(f"\n### Simulated panels: {sims[0]['items']} items, 20% gold, {sims[0]['seeds']} seeds\n")
    add("| scenario | Bayes-optimal | calibrated | gap | Dawid–Skene (no gold) | majority |")
    add("|---|---|---|---|---|---|")
    for r in sims:
        add(f"| {r['scenario']} | {r['bayes']:.3f} | {r['calibrated']:.3f} "
            f"| {(r['bayes'] - r['calibrated']) * 100:.2f} pp "
            f"(±{r['calibrated_gap_se'] * 100:.2f}) | {r['ds']:.3f} "
            f"({(r['bayes'] - r['ds']) * 100:+.2f} pp) | {r['majority']:.3f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--splits", type=int, default=50, help="LLMBar random splits per set")
    ap.add_argument("--sims", type=int, default=20, help="seeds per simulated scenario")
    ap.add_argument("--sim-items", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    llmbar = load_llmbar(args.data)
    crowd = [load_crowd(args.data, "rte"), load_crowd(args.data, "temp")]
    say = (lambda *_: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr,
                                                                    flush=True))
    say("1/4 majority and Dawid-Skene on real votes")
    res: dict[str, Any] = {"real": section_real([*crowd, *llmbar.values()])}
    say("2/4 Dawid-Skene speed")
    res["speed"] = section_speed()
    say("3/4 LLMBar protocol")
    res["llmbar"] = section_llmbar(llmbar, args.splits, args.quiet)
    say("4/4 simulated panels")
    res["sims"] = section_sims(args.sim_items, args.sims)
    res["seconds"] = time.perf_counter() - t0
    res["command"] = " ".join(["python", *sys.argv])
    print(report(res))
    print(f"\n(total {res['seconds']:.0f} s; median LLMBar calibrated fit "
          f"{statistics.median(r['seconds'] / r['splits'] for r in res['llmbar']):.2f} s)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
