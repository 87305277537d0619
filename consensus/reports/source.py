"""Where ``consensus report`` and ``consensus export`` read from: a run folder or a store.

A *target* is either a run's output folder (its ``consensus.sqlite``, or the store its
``summary.json`` names, or the default store; the folder's ``summary.json`` says which run it
holds), the folder's ``summary.json`` itself, an SQLite store file, or a PostgreSQL DSN. A store
file that does not exist is an error, never a new empty store.

Requests are read back through the store's ``request_row`` (schema version 3: the prompt, the
request's metadata and its candidates with their generators) as :class:`Item` values, which is
also what a run's own report makes of its :class:`~consensus.types.Request` objects, so both
reports are drawn by one code path.

Example:
    >>> from consensus.types import Candidate, Request
    >>> r = Request(id="q", prompt="hi", candidates=(Candidate(id="a", text="hello",
    ...             generator="openai/gpt-4o-mini"),), gold={"a": "accept"})
    >>> item = Item.of_request(r)
    >>> item.text("a"), item.generator("a"), item.gold
    ('hello', 'openai/gpt-4o-mini', {'a': 'accept'})
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.errors import ConfigError
from consensus.store import Store, default_store_path, is_dsn, open_store
from consensus.types import Outcome, Request, RunSummary


@dataclass(frozen=True)
class Item:
    """A request as a report or an export sees it: prompt, candidate texts and authors, gold.

    Attributes:
        request_id: The request id.
        prompt: The prompt ("" when the store has no record of the request).
        candidates: Candidate id -> (text, generator or None).
        task: verdict or pairwise.
        gold: Gold label per subject, where known.
        category: The request's category, where known.
    """

    request_id: str
    prompt: str = ""
    candidates: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    task: str = "verdict"
    gold: Mapping[str, str] | None = None
    category: str | None = None

    @classmethod
    def of_request(cls, r: Request) -> Item:
        """The item of a loaded request (a run's own report)."""
        return cls(request_id=r.id, prompt=r.prompt,
                   candidates={c.id: (c.text, c.author()) for c in r.candidates},
                   task=r.task, gold=dict(r.gold) if r.gold else None, category=r.category)

    @classmethod
    def of_row(cls, request_id: str, row: Mapping[str, Any]) -> Item:
        """The item of a store's ``request_row`` ({prompt, meta, candidates})."""
        meta = _as_dict(row.get("meta"))
        inner = _as_dict(meta.get("metadata"))
        cands: dict[str, tuple[str, str | None]] = {}
        for c in row.get("candidates") or ():
            gen = c.get("generator")
            cands[str(c.get("id"))] = (str(c.get("text") or ""),
                                       gen if isinstance(gen, str) and gen else None)
        gold = meta.get("gold")
        task = meta.get("task")
        category = meta.get("category") or inner.get("category")
        return cls(request_id=request_id, prompt=str(row.get("prompt") or ""), candidates=cands,
                   task=task if task in ("verdict", "pairwise") else _guess_task(gold),
                   gold={str(k): str(v) for k, v in gold.items()} if isinstance(gold, dict)
                   and gold else None,
                   category=category if isinstance(category, str) else None)

    def text(self, candidate_id: str) -> str | None:
        """A candidate's text (None when unknown)."""
        c = self.candidates.get(candidate_id)
        return None if c is None else c[0]

    def generator(self, candidate_id: str) -> str | None:
        """The model that wrote a candidate, where known."""
        c = self.candidates.get(candidate_id)
        return None if c is None else c[1]


def _guess_task(gold: object) -> str:
    return "pairwise" if isinstance(gold, dict) and "*" in gold else "verdict"


def _as_dict(value: object) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


@dataclass(frozen=True)
class RunInfo:
    """One row of the store's ``runs`` table."""

    run_id: str
    scenario: str
    strategy: str
    started_at: float
    finished_at: float | None
    config: dict[str, Any]
    summary: RunSummary | None


@dataclass
class Source:
    """An opened target: the store, and the run a run folder holds (if one was named).

    Attributes:
        store: The open store (closed by :func:`open_source`'s context).
        run_id: The run of the folder's ``summary.json`` (None for a store).
        folder: The run folder, when one was named.
        summary: The folder's summary, when it has one.
    """

    store: Store
    run_id: str | None = None
    folder: Path | None = None
    summary: RunSummary | None = None

    def runs(self) -> list[RunInfo]:
        """Every run of the store, oldest first."""
        rows = self.store._execute(  # the public runs() has no config
            "SELECT run_id, scenario, strategy, started_at, finished_at, config, summary "
            "FROM runs ORDER BY started_at, run_id").fetchall()
        out = []
        for run_id, scen, strat, started, finished, config, summary in rows:
            out.append(RunInfo(run_id=run_id, scenario=scen, strategy=strat,
                               started_at=float(started),
                               finished_at=None if finished is None else float(finished),
                               config=_as_dict(config), summary=_summary(summary)))
        return out

    def pick_run(self, run_id: str | None = None) -> RunInfo:
        """The run named by ``run_id``, else the folder's run, else the store's latest run.

        Raises:
            ConfigError: the store has no such run, or no run at all.
        """
        runs = self.runs()
        wanted = run_id or self.run_id
        if wanted is not None:
            for r in runs:
                if r.run_id == wanted:
                    return r
            known = ", ".join(r.run_id for r in runs[-5:]) or "none"
            raise ConfigError(f"the store has no run {wanted!r} (latest runs: {known})",
                              source=self.store.name, field="--run")
        if not runs:
            raise ConfigError("the store holds no run yet", source=self.store.name)
        return runs[-1]

    def decision_times(self, run_id: str) -> dict[str, float]:
        """When each decision of a run was recorded (request id -> Unix time)."""
        rows = self.store._execute(  # created_at is not on Outcome
            "SELECT request_id, created_at FROM decisions WHERE run_id = ?", (run_id,)).fetchall()
        return {rid: float(at) for rid, at in rows}

    def items(self, run_id: str, outcomes: list[Outcome]) -> dict[str, Item]:
        """The recorded requests of a run's outcomes (those the store has a record of)."""
        out: dict[str, Item] = {}
        for o in outcomes:
            row = self.store.request_row(run_id, o.request_id)
            if row is not None:
                out[o.request_id] = Item.of_row(o.request_id, row)
        return out

    def summary_of(self, run: RunInfo) -> RunSummary | None:
        """The run's summary: the store's, else the folder's when it is the same run."""
        if run.summary is not None:
            return run.summary
        if self.summary is not None and self.summary.run_id == run.run_id:
            return self.summary
        return None


def _summary(blob: object) -> RunSummary | None:
    if not blob:
        return None
    try:
        return RunSummary.model_validate_json(str(blob))
    except ValueError:
        return None


def _folder_summary(folder: Path) -> RunSummary | None:
    path = folder / "summary.json"
    if not path.is_file():
        return None
    try:
        return RunSummary.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError("summary.json is not a run summary (is this a run folder?)",
                          source=str(path)) from None


def _folder_store(folder: Path, summary: RunSummary | None) -> str | Path:
    """The store of a run folder: its consensus.sqlite, else the store summary.json names,
    else the default store (when this release has one)."""
    local = folder / "consensus.sqlite"
    if local.is_file():
        return local
    raw = _as_dict((folder / "summary.json").read_text(encoding="utf-8")
                   if (folder / "summary.json").is_file() else "")
    named = raw.get("store")
    if isinstance(named, str) and named:
        return named
    default = default_store_path()
    if summary is not None and default.is_file():
        return default
    raise ConfigError("no store found for this run folder (no consensus.sqlite in it, none "
                      "named by its summary.json); pass the store with --store",
                      source=str(folder), field="--store")


@contextmanager
def open_source(target: str | Path | None, *, store: str | None = None,
                option: str = "RUN_DIR_OR_STORE") -> Iterator[Source]:
    """Open a run folder or a store for reading (closed on exit).

    Args:
        target: A run folder, its summary.json, an SQLite file or a DSN (None: ``store``).
        store: The ``--store`` option (a file or DSN); with a run folder it replaces the
            folder's own store.
        option: How messages name ``target``.

    Raises:
        ConfigError: nothing named, a path that does not exist, a folder that is not a run
            folder, or a store that cannot be opened.
    """
    folder: Path | None = None
    summary: RunSummary | None = None
    where: str | Path
    if target is None:
        if store is None:
            raise ConfigError(f"name a run folder or a store ({option}, or --store PATH)",
                              field=option)
        where = store
    elif is_dsn(target):
        if store is not None:
            raise ConfigError("name the store once: a DSN and --store were both given",
                              field="--store")
        where = target
    else:
        path = Path(target)
        if path.name == "summary.json" and path.is_file():
            path = path.parent
        if not path.exists():
            raise ConfigError("no such run folder or store", source=str(path), field=option)
        if path.is_dir():
            folder, summary = path, _folder_summary(path)
            if summary is None and not (path / "consensus.sqlite").is_file():
                raise ConfigError("not a run folder: it has no summary.json and no "
                                  "consensus.sqlite", source=str(path), field=option)
            where = store if store is not None else _folder_store(path, summary)
        else:
            if store is not None:
                raise ConfigError("name the store once: a store file and --store were both "
                                  "given", source=str(path), field="--store")
            where = path
    if not is_dsn(where) and not Path(where).is_file():
        raise ConfigError("no such store file", source=str(where), field="--store")
    opened = open_store(where)
    try:
        yield Source(store=opened, run_id=summary.run_id if summary and summary.run_id else None,
                     folder=folder, summary=summary)
    finally:
        opened.close()
