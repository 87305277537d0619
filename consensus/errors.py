"""The small exception tree of consensus.

``ConsensusError`` splits by what a caller should do about it:

* :class:`ConfigError`: the configuration is wrong (bad YAML, unknown judge kind or strategy,
  invalid regular expression). Never retried; shown to the user with the file and field.
* :class:`JudgeError`: a judge call failed in a way a retry can help (rate limit, timeout,
  provider down). Judges turn these into abstentions before they reach the coordinator.
* :class:`VerdictParseError`: a judge replied, but the reply could not be read as a verdict.

Third-party errors (litellm, Ray) are translated in exactly one place each:
``judges.llm.map_litellm_error`` and ``consensus.coordinator`` respectively.

Example:
    >>> try:
    ...     raise ConfigError("unknown strategy 'x'", source="s.yaml", field="strategy")
    ... except ConsensusError as e:
    ...     print(e)
    s.yaml: strategy: unknown strategy 'x'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consensus.types import AbstainKind


class ConsensusError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(ConsensusError):
    """The configuration is wrong; retrying cannot help.

    Args:
        message: What is wrong, in a sentence.
        source: The file (or other source) the configuration came from.
        field: Dotted path of the offending field, e.g. ``panel.judges.2.kind``.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.message = message
        self.source = source
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.field) if p]
        return ": ".join([*parts, self.message])


class JudgeError(ConsensusError):
    """A judge call failed; a retry may help (rate limit, timeout, 5xx)."""

    def __init__(self, message: str, *, retryable: bool = True,
                 kind: AbstainKind = "provider_error", unhealthy: bool = False,
                 status: int | None = None, retry_after_s: float | None = None):
        self.retryable = retryable
        self.kind = kind
        self.unhealthy = unhealthy  # says the endpoint is down (refused, 5xx, timeout)
        self.status = status  # the HTTP status, when there was one
        self.retry_after_s = retry_after_s  # the provider's Retry-After, when it sent one
        super().__init__(message)


class VerdictParseError(ConsensusError):
    """A judge's reply could not be parsed into a verdict."""
