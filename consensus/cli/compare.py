"""``consensus compare``: strategies side by side on one scenario, or scenarios against each other.

Examples::

    consensus compare scenarios/llmbar.yaml --strategies majority,dawid_skene,calibrated
    consensus compare scenarios/safety_smoke.yaml scenarios/safety_strict.yaml
"""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from consensus.errors import ConfigError
from consensus.files import output_dir
from consensus.log import configure_logging
from consensus.scenario import load_scenario
from strategies.debate import Debate

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
    seed: Annotated[int, typer.Option(min=0, help="Seed of the splits.")] = 0,
    by_category: Annotated[bool, typer.Option(
        "--by-category", help="Compare within each request category separately (learners fit "
                              "per category), e.g. the LLMBar sets.")] = False,
    out: Annotated[Path | None, typer.Option(help="Directory for compare.csv / .json.")] = None,
    address: Annotated[str | None, typer.Option(help="Join an existing Ray cluster.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
) -> None:
    """Compare strategies (paired, on the same votes) or scenarios (paired by request id)."""
    configure_logging(log_level)
    from consensus.experiments import Contender
    from consensus.experiments import by_category as cut
    from consensus.experiments import compare as run_compare
    from consensus.runner import poll_scenario
    from strategies.registry import strategy_table

    if not 0 <= gold_fraction < 1:
        raise ConfigError(f"--gold-fraction must lie in [0, 1), got {gold_fraction}")
    if not 1 <= splits <= 10_000:
        raise ConfigError(f"--splits must lie in [1, 10000], got {splits}")
    loaded = [load_scenario(p) for p in scenarios]
    out_dir = output_dir(out or Path("out") / f"compare-{'-vs-'.join(s.name for s in loaded)}")
    names = [n.strip() for n in strategies.split(",") if n.strip()] if strategies else None
    if names is None and len(loaded) == 1:
        names = list(strategy_table())
    variants = {sc.name: [sc.with_strategy(n) for n in names] if names else [sc]
                for sc in loaded}  # bad names fail here, before any polling
    console = Console(stderr=True)
    groups: dict[str, list[Contender]] = {}
    for sc in loaded:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task(f"polling {sc.name}", total=len(sc.requests))
            debates = [v.strategy for v in variants[sc.name] if isinstance(v.strategy, Debate)]
            polled = poll_scenario(sc, address=address, debates=debates,
                                   on_progress=partial(_advance, progress, task))
        # a debate is decided on its own final rounds, made from the same round-1 votes
        sources = iter(polled.debated)
        polls = [next(sources) if isinstance(v.strategy, Debate) else polled
                 for v in variants[sc.name]]
        cuts = [cut(p) if by_category else {"all": p} for p in polls]
        parts = cut(polled) if by_category else {"all": polled}
        oracle = sc.oracle()
        prefix = "" if len(loaded) == 1 else f"{sc.name}:"
        for cat, part in parts.items():
            group = groups.setdefault(cat, [])
            for v, cuts_v in zip(variants[sc.name], cuts, strict=True):
                group.append(Contender(prefix + v.strategy.name, cuts_v[cat], v.strategy,
                                       sc.file.policy))
            if oracle is not None:  # simulated panel: the Bayes-optimal ceiling, from the truth
                group.append(Contender(prefix + oracle.name, part, oracle, sc.file.policy))
    results: dict[str, list[Result]] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("deciding", total=len(groups))
        for cat, group in groups.items():
            results[cat] = run_compare(group, gold_fraction=gold_fraction, splits=splits,
                                       seed=seed)
            progress.advance(task)
    rows = [{**({"category": cat} if by_category else {}), **r.row()}
            for cat, rs in results.items() for r in rs]
    with (out_dir / "compare.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    payload = {"gold_fraction": gold_fraction, "splits": splits, "seed": seed,
               "by_category": by_category, "rows": rows,
               "fitted": {f"{cat}/{r.label}" if by_category else r.label: _jsonable(r.fitted)
                          for cat, rs in results.items() for r in rs}}
    (out_dir / "compare.json").write_text(json.dumps(payload, indent=2, default=str))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    wide = Console(width=None if Console().is_terminal else 170)
    if by_category:
        show_matrix(wide, results, splits=splits if any(c.learns for g in groups.values()
                                                        for c in g) else 1)
    else:
        show(wide, results["all"])
    wide.print(f"[dim]wrote {out_dir}/compare.csv and compare.json[/dim]")


def _advance(progress: Progress, task: TaskID, *_: object) -> None:
    progress.advance(task)


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
                "over-refusal", "interv.", "safety", "Brier", "ECE", "p", "calls/req"):
        t.add_column(col, justify="left" if col == "contender" else "right",
                     no_wrap=col == "contender")
    for r in results:
        ci = r.accuracy_ci
        acc = _f(r.accuracy, True) + (f" [{_f(ci[0], True)}, {_f(ci[1], True)}]" if ci else "")
        s = r.summary
        t.add_row(r.label, str(r.n_scored), acc, _f(r.balanced_accuracy),
                  _f(r.block_precision), _f(r.block_recall), _f(s.over_refusal_rate),
                  _f(s.intervention_rate), _f(s.safety_score), _f(r.brier), _f(r.ece),
                  "—" if r.mcnemar_p is None else f"{r.mcnemar_p:.3g}",
                  _f(r.calls_per_request))
    console.print(t)
    panels = {r.summary.scenario: r.summary for r in results}  # agreement and cost: per panel
    for name, s in panels.items():
        console.print(f"[dim]{name}: Krippendorff's alpha {_f(s.krippendorff_alpha)}, Fleiss' "
                      f"kappa {_f(s.fleiss_kappa)}, effective judges {_f(s.effective_judges)}, "
                      f"panel cost ${s.cost_usd:.4f} on the scored requests[/dim]")


def show_matrix(console: Console, results: dict[str, list[Result]], *, splits: int) -> None:
    """Accuracy per contender (rows) and category (columns): the mean over the splits' held-out
    items and, with several splits, the split-to-split spread (SD / sqrt(splits)). The spread
    says how much the choice of gold moves a figure; it is not a confidence interval for the
    accuracy (those are in compare.csv, bootstrapped). The best of each column is bold."""
    labels = list(dict.fromkeys(r.label for rs in results.values() for r in rs))
    t = Table(title=f"accuracy % per category: mean of {splits} split(s) of the held-out items"
                    + (" ± split spread (SD/√splits; not a CI: see compare.csv)"
                       if splits > 1 else ""))
    t.add_column("contender", no_wrap=True)
    for cat, rs in results.items():
        t.add_column(f"{cat}\n(n={rs[0].n_scored})" if rs else cat, justify="right")
    cells: dict[str, dict[str, str]] = {lab: {} for lab in labels}
    for cat, rs in results.items():
        means = {r.label: r.split_accuracy_mean for r in rs}
        best = max((m for m in means.values() if m is not None), default=None)
        for r in rs:
            m, sd = r.split_accuracy_mean, r.split_accuracy_sd
            if m is None:
                cells[r.label][cat] = "—"
                continue
            txt = f"{100 * m:.1f}" + (f" ±{100 * sd / splits ** 0.5:.1f}" if sd else "")
            cells[r.label][cat] = f"[bold]{txt}[/bold]" if m == best else txt
    for lab in labels:
        t.add_row(lab, *(cells[lab].get(cat, "—") for cat in results))
    console.print(t)
