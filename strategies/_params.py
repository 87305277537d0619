"""Ranges of the strategies' hyper-parameters, as pydantic constraints on the dataclass fields.

A strategy field carries its range in its type (``smoothing: PositiveFloat``,
``weights: Weights``). :func:`strategies.registry.build_strategy` validates YAML against these
types with pydantic and reports a ``ConfigError`` naming the field; :func:`check_params`, called
first thing in a strategy's ``__post_init__``, applies the same constraints when a strategy is
built in code. Either way a numerically unsafe strategy cannot be built: ``smoothing=0`` (NaN
posteriors), a negative weight (a vote that counts *against* its label lets a harmful
candidate through), a NaN or infinite weight, ``n_iter < 1``, a negative ``tol``, ...

The error is pydantic's ``ValidationError`` (a ``ValueError``), with the field's path as its
location.

Example:
    >>> from pydantic import ValidationError
    >>> from strategies.dawid_skene import DawidSkene
    >>> try:
    ...     DawidSkene(smoothing=0.0)
    ... except ValidationError as e:
    ...     print(e.errors()[0]["loc"], e.errors()[0]["msg"])
    ('smoothing',) Input should be greater than 0
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import InitErrorDetails

PositiveInt = Annotated[int, Field(ge=1)]
"""An integer >= 1 (iteration counts, folds, ranks)."""

Seed = Annotated[int, Field(ge=0)]
"""A random seed (numpy's generators take only non-negative ones)."""

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A finite float > 0 (smoothing pseudo-counts, regularisation strengths)."""

NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A finite float >= 0 (weights, tolerances, priors)."""

Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
"""A probability in [0, 1]."""

Share = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
"""A share or threshold in (0, 1]."""

Weights = Mapping[str, NonNegativeFloat]
"""Judge name -> weight: finite and >= 0."""


_MODELS: dict[type, type[BaseModel]] = {}
"""Strategy class -> pydantic model of its parameters, built on first use."""


def _parameters_model(cls: type) -> type[BaseModel]:
    """A pydantic model of ``cls``'s init fields, with their constraints (built once per class)."""
    model = _MODELS.get(cls)
    if model is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        fields: dict[str, Any] = {
            f.name: (hints[f.name], ...) for f in dataclasses.fields(cls) if f.init
        }
        model = create_model(
            cls.__name__, __config__=ConfigDict(arbitrary_types_allowed=True), **fields
        )
        _MODELS[cls] = model
    return model


def check_params(obj: object) -> None:
    """Check a strategy dataclass' fields against their constraints; the instance is unchanged.

    Raises:
        pydantic.ValidationError: A field is outside its range; the location names it.
    """
    model = _parameters_model(type(obj))
    model.model_validate({name: getattr(obj, name) for name in model.model_fields})


def param_error(obj: object, field: str, value: Any, message: str) -> ValidationError:
    """A ``ValidationError`` about ``field`` of ``obj`` for a rule spanning several fields.

    Raised from ``__post_init__``, pydantic keeps its location, so ``build_strategy`` names the
    field as it does for the single-field constraints.
    """
    return ValidationError.from_exception_data(type(obj).__name__, [InitErrorDetails(
        type="value_error", loc=(field,), input=value, ctx={"error": ValueError(message)},
    )])
