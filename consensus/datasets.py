"""Datasets of a scenario: requests read from a JSONL file, or generated for simulated panels.

Example:
    >>> DatasetSpec(path="data/x.jsonl", limit=10).limit
    10
    >>> len(SimulatedDataset(n_items=3).generate())
    3
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from consensus.errors import ConfigError
from consensus.files import read_text
from consensus.types import ACCEPT, PAIRWISE_SUBJECT, REJECT, Candidate, Request
from judges.registry import config_error_from


class SimulatedDataset(BaseModel):
    """Requests generated for simulated panels: gold labels drawn from a prior.

    A prior over ``accept`` / ``reject`` gives verdict requests with one candidate ``a``; a prior
    over other labels gives pairwise requests whose candidates are the labels (sorted), so a
    simulated judge picks one of ``K`` labels.

    Example:
        >>> len(SimulatedDataset(n_items=3).generate())
        3
        >>> r = SimulatedDataset(n_items=1, prior={"x": 0.5, "y": 0.3, "z": 0.2}).generate()[0]
        >>> r.task, r.labels(), r.subjects()
        ('pairwise', ('x', 'y', 'z'), ('*',))
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    n_items: int = Field(ge=1, le=10_000_000, description="Number of requests.")
    prior: dict[str, float] = Field(
        default_factory=lambda: {"accept": 0.5, "reject": 0.5}, min_length=1,
        description="P(gold label): accept / reject (verdict requests), or two or more other "
                    "labels (pairwise requests, one candidate per label).")
    seed: int = Field(default=0, ge=0, description="Seed of the gold draws.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not set(self.prior) <= {ACCEPT, REJECT} and len(self.prior) < 2:
            raise ValueError("a prior over labels other than accept/reject needs two or more")
        negative = {k: v for k, v in self.prior.items() if v < 0}
        if negative:
            raise ValueError(f"prior probabilities must be >= 0, got {negative}")
        if not sum(self.prior.values()) > 0:
            raise ValueError("the prior gives every label probability 0")
        return self

    def generate(self) -> tuple[Request, ...]:
        """The requests, gold drawn from the prior."""
        import numpy as np

        labels = sorted(self.prior)
        p = np.array([self.prior[k] for k in labels], dtype=float)
        gold = np.random.default_rng(self.seed).choice(len(labels), size=self.n_items, p=p / p.sum())
        if set(labels) <= {ACCEPT, REJECT}:
            return tuple(Request(id=f"sim-{i}", prompt=f"simulated item {i}",
                                 candidates=(Candidate(id="a", text=""),), gold={"a": labels[g]},
                                 category="simulated")
                         for i, g in enumerate(gold))
        options = tuple(Candidate(id=lab, text="") for lab in labels)
        return tuple(Request(id=f"sim-{i}", prompt=f"simulated item {i}", candidates=options,
                             task="pairwise", gold={PAIRWISE_SUBJECT: labels[g]},
                             category="simulated")
                     for i, g in enumerate(gold))


class DatasetSpec(BaseModel):
    """Where the requests come from.

    Example:
        >>> DatasetSpec(path="data/x.jsonl", limit=10).limit
        10
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str | None = Field(default=None, min_length=1,
                             description="JSONL of requests, relative to the scenario file.")
    simulate: SimulatedDataset | None = Field(
        default=None, description="Generate requests with gold labels instead (simulated panels).")
    limit: int | None = Field(default=None, ge=1, description="Use only the first N requests.")
    categories: tuple[str, ...] | None = Field(
        default=None, description="Keep only requests of these categories."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.path is None) == (self.simulate is None):
            raise ValueError("a dataset has either a path or simulate, not both or neither")
        return self


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def load_requests(base_dir: Path, dataset: str | DatasetSpec, src: str) -> tuple[Request, ...]:
    """Read the JSONL dataset; a bad line names the file, the line and the field."""
    ds = DatasetSpec(path=dataset) if isinstance(dataset, str) else dataset
    if ds.simulate is not None:
        return ds.simulate.generate()[: ds.limit]
    if ds.path is None:
        raise ConfigError("a dataset needs a path or simulate", source=src, field="dataset")
    p = Path(ds.path)
    p = p if p.is_absolute() else base_dir / p
    if not p.exists():
        raise ConfigError(f"dataset {str(p)!r} not found", source=src, field="dataset.path")
    text = read_text(p, what="dataset")
    out: list[Request] = []
    seen: set[str] = set()
    # JSON Lines ends lines with \n only: U+2028 and friends may stand inside a JSON string.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON: {exc.msg} (column {exc.colno})",
                              source=f"{p}:{lineno}") from None
        except RecursionError:
            raise ConfigError("invalid JSON: nested too deeply", source=f"{p}:{lineno}") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise ConfigError(f"invalid JSON value: {exc}", source=f"{p}:{lineno}") from None
        if _SURROGATE_ESCAPE.search(line):
            try:
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError("a string holds a lone surrogate escape (\\ud800-\\udfff), "
                                  "which is not text", source=f"{p}:{lineno}") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"a request is a JSON object, got {type(obj).__name__}",
                              source=f"{p}:{lineno}")
        try:
            req = Request.model_validate(obj)
        except ValidationError as exc:
            raise config_error_from(exc, source=f"{p}:{lineno}", prefix="", data=obj) from None
        if req.id in seen:
            raise ConfigError(f"duplicate request id {req.id!r}", source=f"{p}:{lineno}",
                              field="id")
        seen.add(req.id)
        if ds.categories is None or req.category in ds.categories:
            out.append(req)
        if ds.limit is not None and len(out) >= ds.limit:
            break
    if not out:
        raise ConfigError("the dataset holds no request (after filters)", source=str(p))
    return tuple(out)
