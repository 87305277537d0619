"""Constitutions: principles with severities, interventions and rule checks, loaded strictly.

A constitution is a YAML list of principles. Each has an ``id``, a ``text`` (what LLM judges read),
a ``severity``, an ``intervention`` (what the policy does when it is violated), a ``scope`` (the
``input`` prompt or the ``output`` candidate) and ``checks`` that the rules judge runs. Checks are
a union discriminated by ``type``: ``regex``, ``keywords``, ``length``, ``pii``, ``refusal``,
``injection``. A top-level ``lexicons`` mapping names term lists that patterns use as ``{{name}}``.

Short forms are accepted for checks: ``{keywords: [a, b]}`` is
``{type: keywords, phrases: [a, b]}``; likewise ``{regex: PAT}``, ``{pii: [email]}``,
``{length: 4000}`` (max_chars), ``{refusal: true}``, and the bare strings ``pii`` and ``refusal``.
Other keys may sit next to a short form (``{regex: PAT, flags: [], unless: [...]}``).

.. code-block:: yaml

    name: house rules
    principles:
      - id: no-insults
        text: Do not insult the user.
        severity: high
        intervention: regenerate
        checks:
          - keywords: [idiot, moron]       # leetspeak-aware: "1d10t", "m.o.r.o.n"
      - id: no-card-numbers
        text: Never reveal payment card numbers.
        severity: critical
        checks: [{pii: [credit_card]}]

Loading errors are :class:`~consensus.errors.ConfigError` values that name the file, the field
path (``principles.3.checks.0.pattern``), the principle id, the problem and the bad value.
Patterns are compiled at load on the rules judge's engine (:func:`compile_regex`), so one the
judge cannot compile is a load error. :func:`consensus.lint.lint` warns about principles that
match the same content but disagree; :func:`constitution_json_schema` publishes the schema.

Example:
    >>> c = parse_constitution({"principles": [{"id": "p", "text": "No insults.",
    ...     "severity": "high", "checks": [{"keywords": ["idiot"]}]}]})
    >>> c.principles[0].checks[0].phrases
    ('idiot',)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from consensus.constitution_checks import (
    CHECK_TYPES,
    Check,
    InjectionCheck,
    KeywordsCheck,
    LengthCheck,
    PiiCheck,
    RefusalCheck,
    RegexCheck,
    compile_regex,
    expand_check,
)
from consensus.constitution_lexicon import expand_lexicons
from consensus.errors import ConfigError
from consensus.files import read_yaml
from consensus.types import Severity

__all__ = [
    "SEVERITY_RANK",
    "Check",
    "Constitution",
    "InjectionCheck",
    "Intervention",
    "KeywordsCheck",
    "LengthCheck",
    "PiiCheck",
    "Principle",
    "RefusalCheck",
    "RegexCheck",
    "Scope",
    "compile_regex",
    "constitution_json_schema",
    "load_constitution",
    "parse_constitution",
]

Intervention = Literal["block", "revise", "regenerate", "flag", "escalate"]
Scope = Literal["input", "output"]

SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
"""Order of severities (higher is worse)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Principle(_Frozen):
    """One principle of a constitution.

    Example:
        >>> Principle(id="no-pii", text="Do not leak personal data.", severity="high",
        ...           checks=[{"pii": ["email"]}]).intervention
        'block'
    """

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", description="Unique identifier.")
    text: str = Field(min_length=1, description="The principle, as LLM judges read it.")
    severity: Severity = Field(description="How bad a violation is.")
    intervention: Intervention = Field(default="block", description="Policy action on violation.")
    scope: Scope = Field(default="output", description="input: the prompt; output: the candidate.")
    checks: tuple[Check, ...] = Field(default=(), description="Rule checks (rules judge).")

    @field_validator("checks", mode="before")
    @classmethod
    def _short_forms(cls, v: Any) -> Any:
        if isinstance(v, dict | str):
            v = [v]
        return [expand_check(c) for c in v] if isinstance(v, list | tuple) else v


def _duplicate(ids: list[Any]) -> tuple[int, int] | None:
    """(first index, duplicate index) of the first repeated id, or None."""
    seen: dict[Any, int] = {}
    for i, pid in enumerate(ids):
        if pid in seen:
            return seen[pid], i
        seen[pid] = i
    return None


class Constitution(_Frozen):
    """A named list of principles with unique ids.

    Example:
        >>> c = Constitution(principles=[Principle(id="p", text="t", severity="low")])
        >>> c.principle("p").severity
        'low'
    """

    name: str = Field(default="", description="Name shown in reports.")
    description: str = Field(default="", description="What the constitution is for.")
    version: str = Field(default="", description="Free version tag.")
    lexicons: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Named term lists that regex patterns (and their "
        "unless items) use as {{name}}; expanded at load (see expand_lexicons).")
    principles: tuple[Principle, ...] = Field(min_length=1, description="The principles.")

    @model_validator(mode="after")
    def _unique(self) -> Self:
        dup = _duplicate([p.id for p in self.principles])
        if dup:
            raise ValueError(f"duplicate principle id {self.principles[dup[1]].id!r}")
        return self

    def principle(self, principle_id: str) -> Principle:
        """The principle with this id (KeyError if absent)."""
        for p in self.principles:
            if p.id == principle_id:
                return p
        raise KeyError(principle_id)


def load_constitution(path: str | Path) -> Constitution:
    """Load a constitution YAML file, or raise a ConfigError naming file, field and value.

    Reading goes through :func:`consensus.files.read_yaml`: a missing file, a directory, a file
    that is not UTF-8 (Latin-1, UTF-16, binary) or bad YAML is a ConfigError naming the file.
    """
    data = read_yaml(path, what="constitution")
    return parse_constitution(data, source=str(Path(path)))


def parse_constitution(data: Any, *, source: str = "<constitution>") -> Constitution:
    """Validate constitution data (a mapping, or a bare list of principles)."""
    if isinstance(data, list):
        data = {"principles": data}
    if not isinstance(data, dict):
        raise ConfigError("a constitution is a mapping with a 'principles' list; got "
                          f"{type(data).__name__}", source=source)
    data = expand_lexicons(data, source=source)
    raw = data.get("principles")
    if isinstance(raw, list):
        ids = [p.get("id") if isinstance(p, dict) and isinstance(p.get("id"), str) else i
               for i, p in enumerate(raw)]  # non-ids get their unique index
        dup = _duplicate(ids)
        if dup:
            first, second = dup
            raise ConfigError(f"duplicate principle id (first at principles.{first}.id); "
                              f"got {ids[second]!r}", source=source,
                              field=f"principles.{second}.id")
    try:
        return Constitution.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, data, source) from None



def _config_error(exc: ValidationError, data: dict[str, Any], source: str) -> ConfigError:
    errors = exc.errors()
    # An invalid item also makes its container too short: report the item, not the container.
    errors = [e for e in errors if not any(
        len(o["loc"]) > len(e["loc"]) and o["loc"][:len(e["loc"])] == e["loc"] for o in errors)]
    err = errors[0]
    loc = list(err["loc"])
    # Drop the union tag pydantic inserts: principles.3.checks.0.regex.pattern -> ...0.pattern
    loc = [p for i, p in enumerate(loc)
           if not (i >= 2 and p in CHECK_TYPES and loc[i - 2] == "checks")]
    msg = err["msg"].removeprefix("Value error, ")
    where = ""
    if len(loc) >= 2 and loc[0] == "principles" and isinstance(loc[1], int):
        raw = data.get("principles") or []
        if loc[1] < len(raw) and isinstance(raw[loc[1]], dict) and raw[loc[1]].get("id"):
            where = f" in principle {raw[loc[1]]['id']!r}"
    value = err.get("input")
    shown = (f"a mapping with keys {sorted(map(str, value))}" if isinstance(value, dict)
             else repr(value)[:160])
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    return ConfigError(f"{msg}{where}; got {shown}{more}", source=source,
                       field=".".join(str(p) for p in loc) or None)


def constitution_json_schema() -> dict[str, Any]:
    """JSON Schema of the long form of a constitution (for editor completion).

    Example:
        >>> constitution_json_schema()["title"]
        'Constitution'
    """
    schema = Constitution.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema

