"""Judge kinds by name: parse a spec from YAML data, load its files, build the judge.

An explicit tuple of kinds (no registration by import side effect: under Ray every actor is its
own process). Building is split in two so that panels work on a cluster without a shared disk:

* :func:`prepare` runs in the driver: it reads the files a spec names (constitution, record CSV)
  and fails early with a :class:`ConfigError` that names the file;
* :func:`build_judge` runs inside the hosting actor, from the spec and the prepared payload.

Example:
    >>> spec = parse_judge_spec({"name": "sim", "kind": "simulated", "default_accuracy": 0.9})
    >>> type(spec).__name__, is_shared_kind(spec.kind)
    ('SimulatedJudgeSpec', True)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from consensus.errors import ConfigError
from consensus.redact import redact
from judges.base import Judge, JudgeSpecBase


@dataclass(frozen=True)
class JudgeKind:
    """A judge kind: where its spec and class live, and how it is hosted.

    Attributes:
        kind: The ``kind:`` value in YAML.
        module: Module holding the spec and judge classes.
        spec: Spec class name.
        judge: Judge class name.
        shared_host: I/O-bound or light kinds share one async actor; heavy local models
            (classifiers) get an actor of their own.
    """

    kind: str
    module: str
    spec: str
    judge: str
    shared_host: bool

    def spec_type(self) -> type[JudgeSpecBase]:
        return getattr(importlib.import_module(self.module), self.spec)

    def judge_type(self) -> Any:
        return getattr(importlib.import_module(self.module), self.judge)


DEFAULT_JUDGE_KINDS: tuple[JudgeKind, ...] = (
    JudgeKind("rules", "judges.rules", "RulesJudgeSpec", "RulesJudge", True),
    JudgeKind("classifier", "judges.classifier", "ClassifierJudgeSpec", "ClassifierJudge", False),
    JudgeKind("factuality", "judges.factuality", "FactualitySpec", "FactualityJudge", True),
    JudgeKind("harm", "judges.harm", "HarmJudgeSpec", "HarmJudge", False),
    JudgeKind("llm", "judges.llm", "LLMJudgeSpec", "LLMJudge", True),
    JudgeKind("replay", "judges.replay", "ReplayJudgeSpec", "ReplayJudge", True),
    JudgeKind("simulated", "judges.simulated", "SimulatedJudgeSpec", "SimulatedJudge", True),
)


def judge_kinds(extra: tuple[JudgeKind, ...] = ()) -> dict[str, JudgeKind]:
    """Default kinds plus caller extras; a duplicate kind is an error."""
    out: dict[str, JudgeKind] = {}
    for jk in (*DEFAULT_JUDGE_KINDS, *extra):
        if jk.kind in out:
            raise ConfigError(f"judge kind {jk.kind!r} registered twice")
        out[jk.kind] = jk
    return out


def is_shared_kind(kind: str) -> bool:
    """Whether judges of ``kind`` share one actor by default."""
    return judge_kinds()[kind].shared_host


def parse_judge_spec(
    data: Any, *, source: str | None = None, field: str = "judge"
) -> JudgeSpecBase:
    """Validate one judge entry; unknown kinds list the valid ones."""
    kinds = judge_kinds()
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", source=source,
                          field=field)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise ConfigError(
            f"unknown judge kind {kind!r}; valid kinds: {', '.join(sorted(kinds))}",
            source=source, field=f"{field}.kind",
        )
    try:
        return kinds[kind].spec_type().model_validate(data)
    except ValidationError as exc:
        raise config_error_from(exc, source=source, prefix=field, data=data) from None


def config_error_from(exc: ValidationError, *, source: str | None, prefix: str,
                      data: Any = None) -> ConfigError:
    """Translate a pydantic error into a ConfigError naming the field path and the bad value.

    With the validated ``data``, the path is the user's: the tags pydantic inserts for unions
    (``dataset.DatasetSpec.limit``) are dropped, and of several errors the most specific one
    (the deepest path) is reported.
    """
    errors = exc.errors()
    located = [(_user_path(err["loc"], data), err) for err in errors]
    loc, err = max(located, key=lambda le: len(le[0]))  # max keeps the first of equals
    path = ".".join(str(p) for p in (prefix, *loc) if p != "")
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if err["type"] == "extra_forbidden":
        msg = "Extra inputs are not permitted: unknown field (see `consensus schema`)"
    value = err.get("input")
    shown = "" if err["type"] == "missing" else \
        f"; got {redact(repr(value))[:120] if not isinstance(value, dict) else 'a mapping'}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(f"{msg}{shown}{more}", source=source, field=path or None)


def _user_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """``loc`` without the parts that are not in ``data`` (union tags), the last one excepted
    when it names a missing key."""
    if data is None:
        return loc
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node or isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and i == len(loc) - 1:
            pass  # a required key that is missing
        else:
            continue  # a union tag such as 'str' or 'DatasetSpec'
        out.append(part)
    return tuple(out)


def prepare(spec: JudgeSpecBase, base_dir: Path, cache: dict[Any, Any] | None = None) -> Any:
    """Load what the spec's files hold (in the driver), so actors need no shared disk.

    ``cache`` (keyed by kind and resolved path) lets many judges share one loaded file.
    """
    cache = {} if cache is None else cache
    if spec.kind == "rules":
        from consensus.constitution import load_constitution

        key = ("rules", _resolve(spec.constitution, base_dir))  # type: ignore[attr-defined]
        loader: Any = load_constitution
    elif spec.kind == "replay":
        from judges.replay import RecordTable

        key = ("replay", _resolve(spec.source, base_dir))  # type: ignore[attr-defined]
        loader = RecordTable.load
    else:
        return None
    if key not in cache:
        cache[key] = loader(key[1])
    return cache[key]


def build_judge(spec: JudgeSpecBase, payload: Any) -> Judge:
    """Build the judge object (inside its actor) from its spec and prepared payload."""
    cls = judge_kinds()[spec.kind].judge_type()
    if spec.kind in ("rules", "replay"):
        return cls(spec, payload)
    return cls(spec)


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base_dir / p


def host_name(spec: JudgeSpecBase) -> str:
    """The host a spec lands on: its ``host`` field, its kind if shared, else kind:name."""
    if spec.host:
        return spec.host
    return spec.kind if is_shared_kind(spec.kind) else f"{spec.kind}:{spec.name}"
