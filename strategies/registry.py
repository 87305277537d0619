"""Strategies by name: an explicit tuple of defaults plus caller extras; duplicates raise.

YAML short form ``strategy: majority``; long form ``strategy: {name: weighted, weights: {...}}``.

Example:
    >>> build_strategy("majority").name
    'majority'
    >>> build_strategy({"name": "threshold", "k": 2}).k
    2
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pydantic import TypeAdapter, ValidationError

from consensus.errors import ConfigError
from strategies.base import Strategy

DEFAULT_STRATEGIES: tuple[tuple[str, str], ...] = (
    ("majority", "strategies.majority:Majority"),
    ("weighted", "strategies.weighted:Weighted"),
    ("veto", "strategies.veto:Veto"),
    ("threshold", "strategies.threshold:Threshold"),
    ("mean_score", "strategies.mean_score:MeanScore"),
    ("dawid_skene", "strategies.dawid_skene:DawidSkene"),
    ("one_coin", "strategies.dawid_skene:OneCoin"),
    ("log_odds", "strategies.log_odds:LogOdds"),
    ("calibrated", "strategies.calibrated:Calibrated"),
    ("bradley_terry", "strategies.bradley_terry:BradleyTerry"),
    ("position_debiased", "strategies.position_debiased:PositionDebiased"),
    ("debate", "strategies.debate:Debate"),
)
"""(name, "module:Class") of the built-in strategies; modules load on first use."""

NESTED_EXTRA: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("nested_extra", default=())
"""The caller's extra strategies while a strategy is built, so that the strategies it wraps
(a debate's ``final``, ``position_debiased``'s ``base``) may be caller strategies too."""


WRAPPING_KEYS = ("final", "base")
"""Keys under which a strategy spec holds the spec of a strategy it wraps (a debate's ``final``,
``position_debiased``'s ``base``)."""


def spec_names(spec: Any) -> list[str]:
    """The strategy names in a short or long spec and in the specs it wraps, outermost first
    (other values, such as weights keyed by judge name, are not strategy names).

    Example:
        >>> spec_names({"name": "debate", "final": {"name": "position_debiased",
        ...             "base": "majority"}})
        ['debate', 'position_debiased', 'majority']
    """
    if isinstance(spec, str):
        return [spec]
    if not isinstance(spec, Mapping):
        return []
    names = [spec["name"]] if isinstance(spec.get("name"), str) else []
    for key in WRAPPING_KEYS:
        if key in spec:
            names += spec_names(spec[key])
    return names


def strategy_table(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """Name -> "module:Class" for the defaults plus ``extra``; a duplicate name raises."""
    out: dict[str, str] = {}
    for name, target in (*DEFAULT_STRATEGIES, *extra):
        if name in out:
            raise ConfigError(f"strategy {name!r} registered twice")
        out[name] = target
    return out


def strategy_class(name: str, extra: tuple[tuple[str, str], ...] = ()) -> type:
    """The class registered under ``name``; unknown names list the valid ones."""
    table = strategy_table(extra)
    if name not in table:
        raise ConfigError(
            f"unknown strategy {name!r}; valid strategies: {', '.join(table)}", field="strategy"
        )
    module, cls = table[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_strategy(
    spec: str | Mapping[str, Any],
    *,
    extra: tuple[tuple[str, str], ...] = (),
    defaults: Mapping[str, Any] | None = None,
) -> Strategy:
    """Build a strategy from its short or long YAML form.

    Args:
        spec: ``"majority"`` or ``{"name": "weighted", "weights": {...}}``.
        extra: Caller strategies registered next to the defaults.
        defaults: Parameters used when the spec does not set them and the strategy has them
            (e.g. panel weights for ``weighted``).
    """
    extra = extra or NESTED_EXTRA.get()
    params: dict[str, Any] = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError("a strategy needs a name", field="strategy.name")
    cls = strategy_class(name, extra)
    # init fields only: learned attributes (``skills_``) are fields too, set by ``fit``
    fields = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "name"} \
        if dataclasses.is_dataclass(cls) else set()
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {unknown} for strategy {name!r}; valid: {sorted(fields)}",
            field="strategy",
        )
    for k, v in (defaults or {}).items():
        if k in fields and k not in params:
            params[k] = v
    if "final" in fields and defaults:  # a debate: the panel's defaults reach its final strategy
        final = params.get("final", "majority")
        spec = {"name": final} if isinstance(final, str) else dict(final)
        try:
            inner = strategy_class(str(spec.get("name")), extra) if spec.get("name") else None
        except ConfigError:
            inner = None  # the debate reports it, at strategy.final
        inner_fields = ({f.name for f in dataclasses.fields(inner) if f.init}
                        if inner is not None and dataclasses.is_dataclass(inner) else set())
        params["final"] = {**{k: v for k, v in defaults.items() if k in inner_fields}, **spec}
    try:
        # Validates the dataclass fields' types and ranges (Literal options, the constraints of
        # strategies._params), then constructs.
        token = NESTED_EXTRA.set(extra)
        try:
            return TypeAdapter(cls).validate_python(params)
        finally:
            NESTED_EXTRA.reset(token)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{err['msg']}; got {err.get('input')!r}",
                          field=f"strategy.{where}" if where else "strategy") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategy {name!r}: {exc}", field="strategy") from None
