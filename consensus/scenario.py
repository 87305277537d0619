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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from consensus.constitution import Constitution
from consensus.datasets import DatasetSpec, load_requests
from consensus.errors import ConfigError
from consensus.files import read_yaml
from consensus.generator import GeneratorSpec
from consensus.oracle import BayesOracle
from consensus.policy import Policy
from consensus.types import ACCEPT, REJECT, Request
from judges.base import JudgeSpecBase
from judges.registry import (
    config_error_from,
    host_name,
    judge_kinds,
    parse_judge_spec,
    prepare,
)
from judges.simulated import SimulatedJudgeSpec, resolve_correlations
from strategies.base import Strategy
from strategies.registry import build_strategy


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
    generator: GeneratorSpec | None = Field(
        default=None, description="The model that writes revisions and regenerations (any "
        "litellm model string); without one, revise redacts the spans the rules judge "
        "located and regenerate falls back to the policy's fallback.")
    seed: int = Field(default=0, ge=0, description="Seed for every random choice of the run.")
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
    constitution_files: Mapping[str, Path] = field(default_factory=dict)
    """Judge name -> the constitution file it reads (rules and LLM judges), for hot reload."""

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

    def input_files(self) -> set[Path]:
        """Every file the scenario reads (resolved): itself, its dataset, its judges' files."""
        out = {self.source}
        ds = self.file.dataset
        if ds.path is not None:
            out.add(Path(ds.path) if Path(ds.path).is_absolute() else self.base_dir / ds.path)
        for j in self.judges:
            for attr in ("constitution", "source"):
                value = getattr(j, attr, None)
                if isinstance(value, str):
                    out.add(Path(value) if Path(value).is_absolute() else self.base_dir / value)
        return {p.resolve() for p in out}

    def constitutions(self) -> list[Constitution]:
        """The distinct constitutions the panel's rules judges run (load order)."""
        seen: dict[int, Constitution] = {}
        for value in self.payloads.values():
            if isinstance(value, Constitution):
                seen.setdefault(id(value), value)
        return list(seen.values())

    def principle_texts(self) -> dict[str, str]:
        """Principle id -> text, from the rules judges' constitutions and the LLM judges'
        principles (what a generator reads when it revises)."""
        out = {p.id: p.text for c in self.constitutions() for p in c.principles}
        for j in self.judges:
            for p in getattr(j, "principles", ()):
                out.setdefault(p.id, p.text)
        return out

    def with_strategy(self, spec: str | dict[str, Any]) -> Scenario:
        """The same scenario with another strategy."""
        return Scenario(self.source, self.file, self.judges, self.requests,
                        _strategy(spec, self.judges, str(self.source)), self.payloads,
                        self.constitution_files)

    def limited(self, n: int) -> Scenario:
        """The same scenario with only its first ``n`` requests."""
        return Scenario(self.source, self.file, self.judges, self.requests[:n], self.strategy,
                        self.payloads, self.constitution_files)


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
    named: dict[str, str] = {}  # judge named in the panel (not expanded) -> its field path
    judges_list: list[JudgeSpecBase] = []
    files: dict[str, Path] = {}
    for i, entry in enumerate(doc.panel):
        for spec in _judge_specs(entry, i, path, cache):
            payloads[spec.name] = _prepare(spec, path, f"panel.{i}", cache)
            judges_list.append(spec)
            raw = (getattr(spec, "constitution", None) if spec.kind == "rules" else
                   entry.get("constitution") if isinstance(entry, dict) else None)
            if isinstance(raw, str) and raw:
                files[spec.name] = (Path(raw) if Path(raw).is_absolute()
                                    else path.parent / raw).resolve()
            if not (isinstance(entry, dict) and "expand" in entry):
                named[spec.name] = f"panel.{i}"
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
    problem = doc.policy.check_families([j.model_family() for j in judges])
    if problem:
        raise ConfigError(problem, source=src, field="policy.min_families")
    built = _strategy(strategy if strategy is not None else doc.strategy, judges, src)
    requests = load_requests(path.parent, doc.dataset, src)
    _check_simulated(judges, requests, named, src)
    _check_replay(judges, payloads, requests, named, src)
    scenario = Scenario(path, doc, judges, requests, built, payloads, files)
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


def scenario_warnings(scenario: Scenario) -> list[str]:
    """Choices that are valid but lean towards delivering: said by ``validate`` and logged by
    ``run``, not refused (they have uses, e.g. in pairwise tasks)."""
    out = []
    st = scenario.strategy
    n = len(scenario.judges)
    if getattr(st, "label", None) == ACCEPT and getattr(st, "k", None) == 1 and n > 1:
        out.append(f"strategy {st.name!r} accepts on a single accept vote of {n} judges")
    threshold = getattr(st, "threshold", None)
    if isinstance(threshold, float) and (
            (getattr(st, "label", None) == REJECT and threshold > 0.5)
            or (getattr(st, "label", None) == ACCEPT and threshold < 0.5)):
        bar = threshold if getattr(st, "label", None) == REJECT else 1 - threshold
        out.append(f"strategy {st.name!r} accepts unless mean P(reject) reaches {bar:.2f}: "
                   "a panel that leans to reject can still deliver")
    rule = getattr(st, "tie_rule", None)
    if rule in ("first", "random") and any(r.task == "verdict" for r in scenario.requests):
        out.append(f"strategy {st.name!r} breaks accept/reject ties by "
                   f"{rule!r}, which delivers a candidate on "
                   + ("every tie" if rule == "first" else "half of the ties")
                   + "; the default tie rule 'reject' fails closed")
    out.extend(endpoint_warnings(scenario.judges))
    return out


def endpoint_warnings(judges: Sequence[JudgeSpecBase]) -> list[str]:
    """Judges that call one limited endpoint from different hosts: each host keeps its own
    slots, so the server gets the sum of their limits.

    Example:
        >>> from judges.llm import LLMJudgeSpec
        >>> base = "http://127.0.0.1:8080/v1"
        >>> endpoint_warnings([LLMJudgeSpec(name="a", model="openai/m", api_base=base),
        ...                    LLMJudgeSpec(name="b", model="openai/m", api_base=base, host="x")])
        ['judges a, b call http://127.0.0.1:8080/v1 from 2 hosts (llm, x): its limit of 1 call(s) in flight holds per host, so the server may get up to 2 at once; put them on one host']
    """
    from judges.endpoint import endpoint_key
    from judges.llm import LLMJudgeSpec

    by_endpoint: dict[str, list[LLMJudgeSpec]] = {}
    for spec in judges:
        if isinstance(spec, LLMJudgeSpec) and spec.api_base and spec.endpoint_limit():
            by_endpoint.setdefault(endpoint_key(spec.api_base, ""), []).append(spec)
    out = []
    for key, specs in by_endpoint.items():
        hosts = sorted({host_name(s) for s in specs})
        if len(hosts) > 1:
            limit = min(s.endpoint_limit() or 0 for s in specs)
            out.append(f"judges {', '.join(s.name for s in specs)} call {key} from "
                       f"{len(hosts)} hosts ({', '.join(hosts)}): its limit of {limit} call(s) "
                       f"in flight holds per host, so the server may get up to "
                       f"{limit * len(hosts)} at once; put them on one host")
    return out


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
                     named: Mapping[str, str], src: str) -> None:
    """Simulated judges may only name labels the dataset's requests have."""
    labels = {lab for r in requests for lab in r.labels()}
    for j in judges:
        if not isinstance(j, SimulatedJudgeSpec):
            continue
        where = named.get(j.name, "panel")
        unknown = sorted(set(j.accuracy) - labels)
        if unknown:
            raise ConfigError(f"accuracy names label(s) {unknown} that no request has; labels: "
                              f"{sorted(labels)}", source=src, field=f"{where}.accuracy")
        if j.bias_label is not None and j.bias_label not in labels:
            raise ConfigError(f"bias_label {j.bias_label!r} is not a label of the dataset; "
                              f"labels: {sorted(labels)}", source=src, field=f"{where}.bias_label")


def _check_replay(judges: tuple[JudgeSpecBase, ...], payloads: Mapping[str, Any],
                  requests: tuple[Request, ...], named: Mapping[str, str], src: str) -> None:
    """A replay judge named in the panel none of whose recorded votes fits the dataset would
    only abstain. (Judges of an ``expand`` entry are not checked: a recorded configuration may
    well have skipped the categories a scenario keeps.)"""
    from judges.replay import ReplayJudgeSpec, usable_votes

    for j in judges:
        if isinstance(j, ReplayJudgeSpec) and j.name in payloads and j.name in named:
            recorded = j.recorded_as or j.name
            if usable_votes(payloads[j.name], recorded, requests) == 0:
                raise ConfigError(
                    f"judge {recorded!r} has no usable vote for this dataset in "
                    f"{payloads[j.name].source} (no recorded request id and candidate of the "
                    "dataset with a label of its label space)", source=src,
                    field=named[j.name])


def _judge_specs(data: Any, index: int, path: Path,
                 cache: dict[Any, Any]) -> list[JudgeSpecBase]:
    """One panel entry -> judge specs (a replay entry with ``expand`` gives many)."""
    field = f"panel.{index}"
    if isinstance(data, dict) and data.get("kind") == "replay" and "expand" in data:
        return _expand_replay(data, field, path, cache)
    if isinstance(data, dict) and data.get("kind") == "llm" and "constitution" in data:
        # LLM judges take the constitution's principles into their prompt.
        from consensus.constitution import load_constitution

        data = dict(data)
        raw = data.pop("constitution")
        if not isinstance(raw, str) or not raw:
            raise ConfigError(f"constitution must be a file path, got {raw!r}", source=str(path),
                              field=f"{field}.constitution")
        const = Path(raw) if Path(raw).is_absolute() else path.parent / raw
        key = ("rules", const)  # the key judges.registry.prepare uses: one read per file
        try:
            if key not in cache:
                cache[key] = load_constitution(const)
            principles = cache[key].principles
        except ConfigError as exc:
            raise ConfigError(str(exc), source=str(path), field=f"{field}.constitution") from None
        data["principles"] = [{"id": p.id, "text": p.text} for p in principles]
    return [parse_judge_spec(data, source=str(path), field=field)]


def _expand_replay(data: dict[str, Any], field: str, path: Path,
                   cache: dict[Any, Any]) -> list[JudgeSpecBase]:
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
    key = ("replay", src if src.is_absolute() else path.parent / src)  # as prepare() keys it
    try:
        if key not in cache:
            cache[key] = RecordTable.load(key[1])
        table = cache[key]
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
    field = "strategy"
    node: Any = built
    while node is not None:  # the strategy, then what it wraps (a base, a debate's final)
        _check_against_panel(node, judges, src, field)
        if getattr(node, "_inner", None) is not None:
            node, field = node._inner, f"{field}.base"
        else:
            node, field = getattr(node, "final_", None), f"{field}.final"
    return built


def _check_against_panel(strategy: Any, judges: tuple[JudgeSpecBase, ...], src: str,
                         field: str) -> None:
    """Refuse parameters that name judges not in the panel, or that could let a candidate
    every judge rejects through: weights that are zero for the whole panel, a reject bar
    higher than the panel, competences that turn votes against their label."""
    names = {j.name for j in judges}
    for attr in ("weights", "competences"):
        given = getattr(strategy, attr, None)
        if isinstance(given, Mapping):
            unknown = sorted(set(given) - names)
            if unknown:
                raise ConfigError(f"{attr} name judge(s) {unknown[:5]} that are not in the "
                                  f"panel; judges: {sorted(names)[:10]}", source=src,
                                  field=f"{field}.{attr}")
    weights = getattr(strategy, "weights", None)
    if isinstance(weights, Mapping) and getattr(strategy, "k", None) is None:
        default = getattr(strategy, "default_weight", 1.0)
        if all(weights.get(n, default) == 0 for n in names):
            raise ConfigError("every judge of the panel has weight 0: no vote would count",
                              source=src, field=f"{field}.weights")
    k, label = getattr(strategy, "k", None), getattr(strategy, "label", None)
    if isinstance(k, int) and label == REJECT and k > len(judges):
        raise ConfigError(f"reject needs {k} votes but the panel has {len(judges)} judge(s): "
                          "no candidate could ever be rejected", source=src, field=f"{field}.k")
    competences = getattr(strategy, "competences", None)
    if isinstance(competences, Mapping):
        low = {j: c for j, c in competences.items() if c < 0.5}
        if low:
            raise ConfigError(f"competences below 0.5 {dict(list(low.items())[:5])} are "
                              "negative weights: those judges' votes would count against "
                              "their label", source=src, field=f"{field}.competences")


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema of a scenario file, with each judge kind's spec (for editor completion)."""
    schema = ScenarioFile.model_json_schema()
    kinds = [jk.spec_type().model_json_schema() for jk in judge_kinds().values()]
    schema["properties"]["panel"] = {"type": "array", "items": {"anyOf": kinds}}
    return schema
