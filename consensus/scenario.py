"""Scenario loading: YAML -> strict pydantic, with errors that name file, field path and value.

A scenario names a dataset of requests (JSONL of :class:`~consensus.types.Request`), a panel of
judges, a strategy and a policy. Relative paths are relative to the scenario file.

.. code-block:: yaml

    name: safety_smoke
    dataset: data/safety_smoke.jsonl          # or {path: ..., limit: 100, categories: [toxic]}
    panel:
      - {name: rules, kind: rules, constitution: constitution.yaml}
      - {name: toxicity, kind: classifier, threshold: 0.6}
    strategy: veto                            # or {name: weighted, weights: {rules: 2}}
    policy: {quorum: 0.5, on_no_consensus: block}

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "s.yaml").write_text("name: s\\ndataset: none.jsonl\\npanel: [{name: a, kind: simulated}]\\nstrategy: nope\\n")
    >>> try:
    ...     load_scenario(d / "s.yaml")
    ... except ConfigError as e:
    ...     print(e.field, "|", e.message.split(";")[0])
    strategy | unknown strategy 'nope'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from consensus.errors import ConfigError
from consensus.files import read_text, read_yaml
from consensus.oracle import BayesOracle
from consensus.policy import Policy
from consensus.types import ACCEPT, PAIRWISE_SUBJECT, REJECT, Candidate, Request
from judges.base import JudgeSpecBase
from judges.registry import config_error_from, judge_kinds, parse_judge_spec, prepare
from judges.simulated import SimulatedJudgeSpec, resolve_correlations
from strategies.base import Strategy
from strategies.registry import build_strategy


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
    seed: int = Field(default=0, description="Seed of the gold draws.")

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


class ScenarioFile(BaseModel):
    """The YAML document of a scenario (judges are validated per kind afterwards).

    Example:
        >>> ScenarioFile(name="s", dataset="d.jsonl", panel=[], strategy="majority").dataset.path
        'd.jsonl'
        >>> ScenarioFile(name="s", dataset="d.jsonl", panel=[], strategy="majority").seed
        0
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, pattern=r"^[^/\\\x00]+$",
                      description="Scenario name (used in reports and as the default output "
                                  "folder, so no slash).")
    description: str = Field(default="", description="What the scenario shows.")
    dataset: DatasetSpec = Field(description="Requests: a path (short form) or a dataset mapping.")
    panel: list[dict[str, Any]] = Field(description="Judge specs; each has a name and a kind.")
    strategy: str | dict[str, Any] = Field(default="majority", description="Aggregation.")
    fit_on: str | None = Field(
        default=None,
        description="A labelled scenario (path relative to this file) whose votes and gold fit "
                    "a learning strategy before the run; its panel names the same judges. "
                    "Without it a learner fits on the run's own votes, gold hidden.")
    policy: Policy = Field(default_factory=Policy, description="Quorum and interventions.")
    seed: int = Field(default=0, description="Seed for every random choice of the run.")
    concurrency: int = Field(default=32, ge=1, le=10_000, description="Requests in flight.")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        if v.strip() in (".", ".."):
            raise ValueError(f"a scenario name names its output folder; {v!r} cannot")
        return v

    @field_validator("dataset", mode="before")
    @classmethod
    def _short_dataset(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, str) else v

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_form(cls, v: Any) -> Any:
        if not isinstance(v, str | dict):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError, not TypeError
                "a strategy is a name or a mapping with a name, got "
                f"{type(v).__name__}")
        return v


@dataclass(frozen=True)
class Scenario:
    """A loaded, validated scenario: ready to run.

    Attributes:
        source: The YAML file.
        file: The validated document.
        judges: Judge specs, in panel order.
        requests: The dataset's requests (after limit and category filters).
        strategy: The built strategy.
        payloads: What each judge's files hold (constitution, record table), read and checked
            at load, by judge name: actors get them from the driver, and ``validate`` has
            checked everything ``run`` will need.
    """

    source: Path
    file: ScenarioFile
    judges: tuple[JudgeSpecBase, ...]
    requests: tuple[Request, ...]
    strategy: Strategy
    payloads: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def oracle(self) -> BayesOracle | None:
        """The Bayes-optimal strategy when the panel and the data are simulated, else None."""
        ds = self.file.dataset
        if ds.simulate is None:
            return None
        if not all(isinstance(j, SimulatedJudgeSpec) for j in self.judges):
            return None
        return BayesOracle({j.name: j for j in self.judges}, ds.simulate.prior)  # type: ignore[misc]

    def fit_source(self) -> Path | None:
        """The labelled scenario named by ``fit_on``, as a path (None without one)."""
        if self.file.fit_on is None:
            return None
        p = Path(self.file.fit_on)
        return p if p.is_absolute() else self.base_dir / p

    def with_strategy(self, spec: str | dict[str, Any]) -> Scenario:
        """The same scenario with another strategy."""
        return Scenario(self.source, self.file, self.judges, self.requests,
                        _strategy(spec, self.judges, str(self.source)), self.payloads)

    def limited(self, n: int) -> Scenario:
        """The same scenario with only its first ``n`` requests."""
        return Scenario(self.source, self.file, self.judges, self.requests[:n], self.strategy,
                        self.payloads)


def load_scenario(path: str | Path, *, strategy: str | dict[str, Any] | None = None,
                  check_fit_on: bool = True) -> Scenario:
    """Load and validate a scenario file, or raise a ConfigError naming file, field and problem.

    Everything a run will need is read and checked here, without starting Ray: the dataset,
    every judge's files (constitutions, record CSVs, the recorded judges in them), the strategy
    and its parameters against the panel, the policy against the panel size, and the ``fit_on``
    scenario (loaded, and required to hold gold).
    """
    path = Path(path)
    data = read_yaml(path, what="scenario")
    src = str(path)
    if not isinstance(data, dict):
        raise ConfigError("a scenario is a mapping at the top level, got "
                          f"{type(data).__name__}", source=src)
    try:
        doc = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(exc, source=src, prefix="", data=data) from None
    cache: dict[Any, Any] = {}
    payloads: dict[str, Any] = {}
    judges_list: list[JudgeSpecBase] = []
    for i, entry in enumerate(doc.panel):
        for spec in _judge_specs(entry, i, path):
            payloads[spec.name] = _prepare(spec, path, f"panel.{i}", cache)
            judges_list.append(spec)
    judges = tuple(judges_list)
    names = [j.name for j in judges]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"duplicate judge name(s) {dupes}", source=src, field="panel")
    try:
        judges = tuple(resolve_correlations(judges))
    except ValueError as exc:
        raise ConfigError(str(exc), source=src, field="panel") from None
    if not judges:
        raise ConfigError("a panel needs at least one judge", source=src, field="panel")
    problem = doc.policy.check_panel(len(judges))
    if problem:
        raise ConfigError(problem, source=src, field="policy.quorum")
    built = _strategy(strategy if strategy is not None else doc.strategy, judges, src)
    requests = load_requests(path.parent, doc.dataset, src)
    _check_simulated(judges, requests, doc.panel, src)
    scenario = Scenario(path, doc, judges, requests, built, payloads)
    fit_source = scenario.fit_source()
    if fit_source is not None and check_fit_on:
        if not fit_source.is_file():
            raise ConfigError(f"no scenario file at {fit_source}", source=src, field="fit_on")
        try:
            labelled = load_scenario(fit_source, check_fit_on=False)
        except ConfigError as exc:
            raise ConfigError(str(exc), source=src, field="fit_on") from None
        if not any(r.gold for r in labelled.requests):
            raise ConfigError(f"{fit_source} has no gold labels to fit on", source=src,
                              field="fit_on")
    return scenario


def _prepare(spec: JudgeSpecBase, path: Path, field: str, cache: dict[Any, Any]) -> Any:
    """Read the judge's files now, so that a missing or broken file fails at load."""
    try:
        payload = prepare(spec, path.parent, cache)
    except ConfigError as exc:
        what = "constitution" if spec.kind == "rules" else "source"
        raise ConfigError(str(exc), source=str(path), field=f"{field}.{what}") from None
    recorded = getattr(spec, "recorded_as", None) or spec.name
    judges = getattr(payload, "judges", None)
    if spec.kind == "replay" and judges is not None and recorded not in judges:
        known = ", ".join(sorted(judges)[:5]) + (", ..." if len(judges) > 5 else "")
        key = "recorded_as" if getattr(spec, "recorded_as", None) else "name"
        raise ConfigError(f"judge {recorded!r} has no recorded vote in {payload.source} "
                          f"(recorded judges: {known})", source=str(path),
                          field=f"{field}.{key}")
    return payload


def _check_simulated(judges: tuple[JudgeSpecBase, ...], requests: tuple[Request, ...],
                     panel: list[dict[str, Any]], src: str) -> None:
    """Simulated judges may only name labels the dataset's requests have."""
    labels = {lab for r in requests for lab in r.labels()}
    index = {e.get("name"): i for i, e in enumerate(panel) if isinstance(e, dict)}
    for j in judges:
        if not isinstance(j, SimulatedJudgeSpec):
            continue
        where = f"panel.{index.get(j.name, '?')}"
        unknown = sorted(set(j.accuracy) - labels)
        if unknown:
            raise ConfigError(f"accuracy names label(s) {unknown} that no request has; labels: "
                              f"{sorted(labels)}", source=src, field=f"{where}.accuracy")
        if j.bias_label is not None and j.bias_label not in labels:
            raise ConfigError(f"bias_label {j.bias_label!r} is not a label of the dataset; "
                              f"labels: {sorted(labels)}", source=src, field=f"{where}.bias_label")


def _judge_specs(data: Any, index: int, path: Path) -> list[JudgeSpecBase]:
    """One panel entry -> judge specs (a replay entry with ``expand`` gives many)."""
    field = f"panel.{index}"
    if isinstance(data, dict) and data.get("kind") == "replay" and "expand" in data:
        return _expand_replay(data, field, path)
    if isinstance(data, dict) and data.get("kind") == "llm" and "constitution" in data:
        # LLM judges take the constitution's principles into their prompt.
        from consensus.constitution import load_constitution

        data = dict(data)
        raw = data.pop("constitution")
        if not isinstance(raw, str) or not raw:
            raise ConfigError(f"constitution must be a file path, got {raw!r}", source=str(path),
                              field=f"{field}.constitution")
        const = Path(raw) if Path(raw).is_absolute() else path.parent / raw
        try:
            principles = load_constitution(const).principles
        except ConfigError as exc:
            raise ConfigError(str(exc), source=str(path), field=f"{field}.constitution") from None
        data["principles"] = [{"id": p.id, "text": p.text} for p in principles]
    return [parse_judge_spec(data, source=str(path), field=field)]


def _expand_replay(data: dict[str, Any], field: str, path: Path) -> list[JudgeSpecBase]:
    """``{kind: replay, source: f.csv, expand: all | [names]}``: one judge per recorded judge."""
    from judges.replay import RecordTable

    data = dict(data)
    expand = data.pop("expand")
    source = data.get("source")
    if not isinstance(source, str) or not source:
        raise ConfigError("a replay entry needs a source (a CSV path)", source=str(path),
                          field=f"{field}.source")
    if expand != "all" and (not isinstance(expand, list) or not expand
                            or not all(isinstance(n, str) for n in expand)):
        raise ConfigError(f"expand must be 'all' or a non-empty list of judge names, got "
                          f"{expand!r}", source=str(path), field=f"{field}.expand")
    src = Path(source)
    try:
        table = RecordTable.load(src if src.is_absolute() else path.parent / src)
    except ConfigError as exc:
        raise ConfigError(str(exc), source=str(path), field=f"{field}.source") from None
    names = sorted(table.judges) if expand == "all" else expand
    unknown = sorted(set(names) - table.judges)
    if unknown:
        raise ConfigError(f"judges {unknown[:5]} not recorded in {src}", source=str(path),
                          field=f"{field}.expand")
    return [parse_judge_spec({**data, "name": n}, source=str(path), field=field) for n in names]


def _strategy(spec: str | dict[str, Any], judges: tuple[JudgeSpecBase, ...], src: str) -> Strategy:
    weights = {j.name: j.weight for j in judges if j.weight != 1.0}
    try:
        built = build_strategy(spec, defaults={"weights": weights} if weights else None)
    except ConfigError as exc:
        raise ConfigError(exc.message, source=src, field=exc.field or "strategy") from None
    names = {j.name for j in judges}
    for attr in ("weights", "competences"):
        given = getattr(built, attr, None)
        if isinstance(given, Mapping):
            unknown = sorted(set(given) - names)
            if unknown:
                raise ConfigError(f"{attr} name judge(s) {unknown[:5]} that are not in the "
                                  f"panel; judges: {sorted(names)[:10]}", source=src,
                                  field=f"strategy.{attr}")
    return built


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
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON: {exc.msg} (column {exc.colno})",
                              source=f"{p}:{lineno}") from None
        except RecursionError:
            raise ConfigError("invalid JSON: nested too deeply", source=f"{p}:{lineno}") from None
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


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema of a scenario file, with each judge kind's spec (for editor completion)."""
    schema = ScenarioFile.model_json_schema()
    kinds = [jk.spec_type().model_json_schema() for jk in judge_kinds().values()]
    schema["properties"]["panel"] = {"type": "array", "items": {"anyOf": kinds}}
    return schema
