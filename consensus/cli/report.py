"""``consensus report``: one self-contained HTML report of a run, from its folder or a store.

Example::

    consensus report out/smoke --out report.html
    consensus report ~/.local/share/consensus/consensus.sqlite --run RUN_ID --out r.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from consensus.errors import ConfigError
from consensus.reports.html import report_from_source
from consensus.reports.source import open_source


def report(
    target: Annotated[str, typer.Argument(
        help="A run folder, or a store (SQLite file or postgresql:// DSN).",
        metavar="RUN_DIR_OR_STORE")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    run: Annotated[str | None, typer.Option(
        "--run", help="The run to report (default: the folder's run, else the latest).")]
        = None,
) -> None:
    """Write one self-contained HTML report (no network needed to view it).

    Exit codes: 0 written; 2 bad input.
    """
    if out.is_dir():
        raise ConfigError("the output is a directory; name a file", source=str(out),
                          field="--out")
    with open_source(target) as src:
        html, run_id = report_from_source(src, run)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the report: {exc.strerror or exc}", source=str(out),
                          field="--out") from None
    Console(stderr=True).print(f"wrote {out} (run {run_id})")
