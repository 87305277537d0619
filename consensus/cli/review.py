"""``consensus review``: the review queue in the terminal (see :mod:`consensus.review_tui`).

Example::

    consensus review --reviewer ana                 # the keyboard-driven UI
    consensus review --store runs.sqlite --run r1 --list   # the queue as JSON, no UI
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer

from consensus.errors import ConfigError

INSTALL_HINT = "pip install 'consensus-panel[review]'"


def _default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "reviewer"


def review(
    store: Annotated[str | None, typer.Option(help="SQLite file or postgresql:// DSN "
                                                   "(default: the user data directory).")] = None,
    reviewer: Annotated[str | None, typer.Option(help="Your name on claims and reviews "
                                                      "(default: the login name).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Review only this run's items.")]
    = None,
    list_only: Annotated[bool, typer.Option("--list", help="Print the pending queue as JSON "
                                                           "and exit (no UI).")] = False,
) -> None:
    """Review escalated decisions: accept, reject, prefer a candidate or revise, with a note;
    keys a r 1-9 e n u s q (shown in the footer). Several reviewers at once never get the same
    item."""
    from consensus.review import ReviewQueue
    from consensus.store import default_store_path, open_store

    name = (reviewer if reviewer is not None else _default_reviewer()).strip()
    if not name or len(name) > 200:
        raise ConfigError("a reviewer is a name of 1 to 200 characters", field="--reviewer")
    if not list_only:
        try:  # before the store opens: the hint costs nothing
            from consensus.review_tui import ReviewApp
        except ImportError as exc:
            raise ConfigError(f"the review UI needs textual ({exc.name or 'textual'} is "
                              f"missing): {INSTALL_HINT}", field="review") from None
    db = open_store(store if store is not None else default_store_path())
    try:
        queue = ReviewQueue(db)
        if list_only:
            typer.echo(json.dumps(queue.list(run_id=run), indent=2))
            return
        ReviewApp(queue, name, run).run()
    finally:
        db.close()
