"""``consensus validate FILE...``: load scenarios or constitutions strictly, lint, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consensus.errors import ConfigError
from consensus.scenario import load_scenario, read_yaml


def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario or constitution YAML files.")],
) -> None:
    """Check files without running anything; exit 2 on the first invalid one."""
    from consensus.constitution import lint, load_constitution

    for f in files:
        data = read_yaml(f)
        if isinstance(data, dict) and "principles" in data:
            c = load_constitution(f)
            warnings = lint(c)
            typer.echo(f"{f}: constitution ok ({len(c.principles)} principles)")
            for w in warnings:
                typer.echo(f"{f}: warning: {w}")
        elif isinstance(data, dict):
            s = load_scenario(f)
            typer.echo(f"{f}: scenario ok ({len(s.judges)} judges, {len(s.requests)} requests, "
                       f"strategy {s.strategy.name})")
        else:
            raise ConfigError("neither a scenario nor a constitution", source=str(f))
