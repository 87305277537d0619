"""``consensus audit``: position and verbosity bias, injection susceptibility and
self-consistency of every judge of a panel and of its aggregate (see :mod:`consensus.audit`).

Examples::

    consensus audit scenarios/safety_smoke.yaml
    consensus audit scenarios/llmbar.yaml --limit 100 --probes position,consistency
    consensus audit scenarios/local_llm.yaml --repeats 3 --out out/audit-local
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from consensus.files import output_dir
from consensus.log import configure_logging
from consensus.scenario import load_scenario

if TYPE_CHECKING:
    from consensus.audit import AuditReport, ProbeResult

HEADINGS = {"position": "position\nflip rate", "verbosity": "verbosity\n→ padded",
            "injection": "injection\n→ accept", "consistency": "self-consistency\ndisagreement"}


def audit(
    scenario: Annotated[Path, typer.Argument(help="The scenario whose panel to audit.")],
    out: Annotated[Path | None, typer.Option(
        help="Directory for audit.json / audit.csv (default: out/audit-<scenario>).")] = None,
    limit: Annotated[int, typer.Option(
        help="Requests audited at most (a seeded sample of a larger scenario).")] = 200,
    repeats: Annotated[int, typer.Option(
        help="Asks of each original request in all, for self-consistency (2-20).")] = 2,
    probes: Annotated[str, typer.Option(
        help="Comma-separated: position, verbosity, injection, consistency.")]
        = "position,verbosity,injection,consistency",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the sample and the padding.")] = 0,
    address: Annotated[str | None, typer.Option(help="Join an existing Ray cluster.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
) -> None:
    """Measure each judge's (and the aggregate's) biases with Wilson 95% intervals."""
    configure_logging(log_level)
    from consensus.audit import AuditSettings, audit_scenario, planned_polls, write_files
    from consensus.runner import ensure_ray

    names = AuditSettings.parse_probes(probes)
    sc = load_scenario(scenario)
    settings = AuditSettings(probes=names, repeats=repeats, limit=limit, seed=seed,
                             concurrency=sc.file.concurrency)
    out_dir = output_dir(out or Path("out") / f"audit-{sc.name}")
    ensure_ray(address)  # a bad --address fails here, before the progress bar
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"auditing {sc.name}", total=planned_polls(sc.requests, settings))
        report = audit_scenario(sc, settings, address=address,
                                on_progress=lambda: progress.advance(task))
    json_path, csv_path = write_files(report, out_dir)
    wide = Console(width=None if Console().is_terminal else 170)
    show(wide, report)
    wide.print(f"[dim]wrote {json_path} and {csv_path}[/dim]")


def cell(res: ProbeResult) -> str:
    """A table cell: the rate in percent with its Wilson interval and n, or n/a."""
    r = res.rate
    abst = f", {r.abstained} abst." if r.abstained else ""
    if r.rate is None or r.ci is None:
        return f"n/a{f' ({r.abstained} abst.)' if r.abstained else ''}"
    lo, hi = r.ci
    return f"{100 * r.rate:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]\nn={r.n}{abst}"


def show(console: Console, report: AuditReport) -> None:
    """The audit table: one row per judge and one for the aggregate, one column per probe."""
    probes = report.settings.probes
    t = Table(title=f"audit of {report.scenario}: {report.n_requests} of {report.n_available} "
                    f"requests ({report.n_verdict} verdict, {report.n_pairwise} pairwise), "
                    f"{report.calls} polls; rate [Wilson 95% CI]",
              show_lines=True)
    t.add_column("judge", no_wrap=True)
    t.add_column("kind")
    for p in probes:
        t.add_column(HEADINGS[p], justify="right")
    if "position" in probes:
        t.add_column("first-listed\nshare", justify="right")
    for row, results in report.rows.items():
        style = "bold" if row == report.panel_row else None
        cells = [cell(results[p]) for p in probes]
        if "position" in probes:
            first = results["position"].extra.get("first_listed")
            cells.append("n/a" if first is None or first.rate is None
                         else f"{100 * first.rate:.1f}%\nn={first.n}")
        t.add_row(row, report.kinds.get(row, ""), *cells, style=style)
    console.print(t)
    notes = {results[p].note for results in report.rows.values() for p in probes
             if results[p].note}
    for note in sorted(notes):
        console.print(f"[dim]{note}[/dim]")
    by_note: dict[str, list[str]] = {}
    for row, note in report.notes.items():
        by_note.setdefault(note, []).append(row)
    for note, rows in by_note.items():
        who = ", ".join(rows[:3]) + (f" and {len(rows) - 3} more" if len(rows) > 3 else "")
        console.print(f"[dim]{who}: {note}[/dim]")
    for name, why in report.disabled.items():
        console.print(f"[dim]{name}: not audited ({why})[/dim]")
