"""``consensus validate FILE...``: load scenarios or constitutions strictly, lint, report.

Validation checks everything ``consensus run`` will need, without starting Ray: the dataset,
every judge's files (constitutions, record CSVs and the judges recorded in them), the strategy
and policy against the panel, and a ``fit_on`` scenario. Every file is checked; each invalid one
gets an error line naming the file, the field path and the problem, and the exit code is 2 if
any was invalid. A valid constitution also gets warnings: principles that overlap but disagree
(:func:`consensus.lint.lint`) and patterns at risk of catastrophic or polynomial backtracking
(:func:`consensus.lint_file.lint_regexes`, static analysis only; ``consensus constitution lint``
adds timed probes and the corpus checks). Warnings never change the exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from consensus.errors import ConfigError
from consensus.files import read_yaml


def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario or constitution YAML files.")],
) -> None:
    """Check files without running anything; exit 2 if any is invalid."""
    failed = 0
    for f in files:
        try:
            typer.echo(check_file(f))
        except ConfigError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    if failed:
        raise typer.Exit(2)


def check_file(f: Path) -> str:
    """Validate one file; the report line, or a ConfigError."""
    from consensus.constitution import parse_constitution
    from consensus.lint import lint
    from consensus.lint_file import lint_regexes
    from consensus.scenario import load_scenario, scenario_warnings

    data = read_yaml(f)
    if isinstance(data, list) or (isinstance(data, dict) and "principles" in data):
        c = parse_constitution(data, source=str(f))
        lines = [f"{f}: constitution ok ({len(c.principles)} principles)"]
        lines += [f"{f}: warning: {w}" for w in lint(c)]
        # the static regex risks only: no timed probe, no corpus (`constitution lint` has them)
        lines += [r.model_copy(update={"severity": "warning"}).text() for r in lint_regexes(f)]
        return "\n".join(lines)
    if isinstance(data, dict):
        s = load_scenario(f)
        head = (f"{f}: scenario ok ({len(s.judges)} judges, {len(s.requests)} requests, "
                f"strategy {s.strategy.name})")
        lines = [head]
        lines += [f"{f}: warning: {w}" for w in scenario_warnings(s)]
        return "\n".join(lines)
    raise ConfigError("neither a scenario (a mapping with name, dataset, panel) nor a "
                      f"constitution (a list or a mapping of principles); got "
                      f"{type(data).__name__}", source=str(f))
