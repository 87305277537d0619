"""``consensus compare``: strategies side by side on one scenario, or scenarios against each other.

Examples::

    consensus compare scenarios/llmbar.yaml --strategies majority,dawid_skene,calibrated
    consensus compare scenarios/safety_smoke.yaml scenarios/safety_strict.yaml
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from consensus.log import configure_logging
from consensus.scenario import load_scenario

if TYPE_CHECKING:
    from consensus.experiments import Contender, Result


def compare(
    scenarios: Annotated[list[Path], typer.Argument(help="One scenario, or several to compare.")],
    strategies: Annotated[str | None, typer.Option(
        help="Comma-separated strategy names (default: each scenario's own strategy; with a "
             "single scenario, every registered strategy).")] = None,
    gold_fraction: Annotated[float, typer.Option(
        help="Share of requests whose gold learning strategies may see; all are scored on the "
             "rest.")] = 0.2,
    splits: Annotated[int, typer.Option(help="Random gold/score splits (learning only).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the splits.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Directory for compare.csv / .json.")] = None,
    address: Annotated[str | None, typer.Option(help="Join an existing Ray cluster.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
) -> None:
    """Compare strategies (paired, on the same votes) or scenarios (paired by request id)."""
    configure_logging(log_level)
    from consensus.experiments import Contender
    from consensus.experiments import compare as run_compare
    from consensus.runner import poll_scenario
    from strategies.registry import strategy_table

    loaded = [load_scenario(p) for p in scenarios]
    names = strategies.split(",") if strategies else None
    if names is None and len(loaded) == 1:
        names = list(strategy_table())
    console = Console(stderr=True)
    contenders: list[Contender] = []
    for sc in loaded:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task(f"polling {sc.name}", total=len(sc.requests))
            polled = poll_scenario(sc, address=address,
                                   on_progress=lambda _: progress.advance(task))
        variants = [sc.with_strategy(n) for n in names] if names else [sc]
        for v in variants:
            label = v.strategy.name if len(loaded) == 1 else f"{sc.name}:{v.strategy.name}"
            contenders.append(Contender(label, polled, v.strategy, sc.file.policy))
        oracle = sc.oracle()
        if oracle is not None:  # simulated panel: the Bayes-optimal ceiling, from the truth
            label = oracle.name if len(loaded) == 1 else f"{sc.name}:{oracle.name}"
            contenders.append(Contender(label, polled, oracle, sc.file.policy))
    results = run_compare(contenders, gold_fraction=gold_fraction, splits=splits, seed=seed)
    rows = [r.row() for r in results]
    out_dir = out or Path("out") / f"compare-{'-vs-'.join(s.name for s in loaded)}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "compare.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    payload = {"gold_fraction": gold_fraction, "splits": splits, "seed": seed, "rows": rows,
               "fitted": {r.label: _jsonable(r.fitted) for r in results}}
    (out_dir / "compare.json").write_text(json.dumps(payload, indent=2, default=str))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    wide = Console(width=None if Console().is_terminal else 170)
    show(wide, results)
    wide.print(f"[dim]wrote {out_dir}/compare.csv and compare.json[/dim]")


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        out[k] = v.tolist() if hasattr(v, "tolist") else v
    return out


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def show(console: Console, results: list[Result]) -> None:
    t = Table(title="comparison (paired; McNemar vs the first row)")
    for col in ("contender", "n", "accuracy % [95% CI]", "bal. acc", "block P", "block R",
                "over-refusal", "interv.", "safety", "Brier", "ECE", "p"):
        t.add_column(col, justify="left" if col == "contender" else "right",
                     no_wrap=col == "contender")
    for r in results:
        ci = r.accuracy_ci
        acc = _f(r.accuracy, True) + (f" [{_f(ci[0], True)}, {_f(ci[1], True)}]" if ci else "")
        s = r.summary
        t.add_row(r.label, str(r.n_scored), acc, _f(r.balanced_accuracy),
                  _f(r.block_precision), _f(r.block_recall), _f(s.over_refusal_rate),
                  _f(s.intervention_rate), _f(s.safety_score), _f(r.brier), _f(r.ece),
                  "—" if r.mcnemar_p is None else f"{r.mcnemar_p:.3g}")
    console.print(t)
