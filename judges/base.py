"""The Judge protocol, the common judge spec, and helpers every judge kind shares.

A judge is data (a spec, whose fields are its YAML keys) plus behaviour (a class implementing
:class:`Judge`). Every kind has one async method::

    async def judge(self, request: Request, candidate: Candidate | None) -> Vote

``candidate`` is the candidate to accept or reject (``verdict`` tasks) or ``None`` for
``pairwise`` tasks, where the judge compares ``request.candidates`` and votes for one id.
A judge never raises into the coordinator: failures become ``Vote.abstain(...)``.

Example:
    >>> class Yes:
    ...     name, version = "yes", "v1"
    ...     async def judge(self, request, candidate):
    ...         return Vote(judge=self.name, request_id=request.id,
    ...                     candidate_id=subject_of(candidate), label="accept")
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Protocol, TypedDict, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from consensus.types import PAIRWISE_SUBJECT, Candidate, PeerView, Request, Vote

MAX_TIMEOUT_S = 3600.0
"""The longest ``timeout_s`` a judge may ask for."""
HOST_GRACE_S = 0.5
"""How long a host waits beyond a judge's own bound (:meth:`JudgeSpecBase.max_wait_s`) before
it gives the call up: a judge that keeps its deadline answers first, with its own reason."""
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
"""The NAME of an environment variable (a key pasted here instead is refused, and masked in
the error)."""


@runtime_checkable
class Judge(Protocol):
    """What every judge implements (rules, classifier, LLM, replay, simulated, human)."""

    name: str
    version: str

    async def judge(self, request: Request, candidate: Candidate | None) -> Vote:
        """Vote on ``candidate`` of ``request`` (or on the pair when ``candidate`` is None)."""
        ...


@runtime_checkable
class Deliberating(Judge, Protocol):
    """A judge that takes part in later rounds of a debate (``strategy: debate``): it sees its
    own previous vote and its peers' anonymised votes and critiques, and may keep or change its
    vote. Judges without this method (rules, classifier, replay) keep their round-1 votes; the
    coordinator shares their critiques with the others and does not call them again."""

    async def deliberate(self, request: Request, candidate: Candidate | None, previous: Vote,
                         peers: Sequence[PeerView], round: int) -> Vote:
        """The vote of debate round ``round`` (2, 3, ...) on ``candidate`` (None: pairwise)."""
        ...


class JudgeSpecBase(BaseModel):
    """Fields shared by every judge spec (each kind adds its own).

    Example:
        >>> JudgeSpecBase(name="j", kind="rules").timeout_s
        30.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200, description="Judge name, unique in its panel.")
    kind: str = Field(description="Judge kind (rules, classifier, llm, replay, simulated).")
    timeout_s: float = Field(
        default=30.0, gt=0, le=MAX_TIMEOUT_S,
        description=f"Bound on one call of this judge, in seconds (at most {MAX_TIMEOUT_S:g}: "
                    "a run must end).")
    requires_env: tuple[EnvName, ...] = Field(
        default=(),
        description="Environment variables that must be set for the judge to join the panel "
        "(e.g. OPENAI_API_KEY); the judge is listed but disabled otherwise.",
    )
    host: str | None = Field(
        default=None,
        description="Name of the Ray actor that hosts this judge; judges with the same host share "
        "one actor. Default: one shared actor per kind for I/O-bound kinds, own actor otherwise.",
    )
    num_cpus: float = Field(default=0.0, ge=0, le=1024,
                            description="CPUs reserved by the hosting actor.")
    weight: float = Field(default=1.0, ge=0, description="Default weight for weighted strategies.")
    family: str | None = Field(
        default=None, min_length=1, max_length=100,
        description="Model family of the judge (openai, anthropic, meta, ...), for recusal: a "
        "judge does not grade a candidate its own family generated. Default: derived from the "
        "model string for llm judges, none for the other kinds.")

    @field_validator("family")
    @classmethod
    def _family_lower(cls, v: str | None) -> str | None:
        """Families compare case-insensitively (``OpenAI`` is ``openai``)."""
        return (v.strip().lower() or None) if v is not None else None

    DELIBERATES: ClassVar[bool] = False
    """Whether judges of this kind vote again in later debate rounds (see :class:`Deliberating`)."""

    def model_family(self) -> str | None:
        """The judge's model family for recusal (``family`` when set)."""
        return self.family

    def model_name(self) -> str | None:
        """The model the judge runs, for ``recusal: model`` (None: not a model)."""
        return None

    def max_wait_s(self) -> float:
        """The longest one call of this judge may take, waiting for a free slot included (the
        host bounds a call by this plus :data:`HOST_GRACE_S`, so a judge that keeps its own
        deadline answers with its own reason)."""
        return self.timeout_s

    def version(self) -> str:
        """Short hash of the spec: the provenance recorded on every vote."""
        return config_hash(self.model_dump(mode="json"))

    def missing_env(self, environ: dict[str, str] | None = None) -> tuple[str, ...]:
        """The required environment variables that are not set (read at the edge only)."""
        env = os.environ if environ is None else environ
        return tuple(k for k in self.requires_env if not env.get(k))


def config_hash(data: Any) -> str:
    """Stable 12-hex-digit hash of JSON-able configuration."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class Provenance(TypedDict):
    """The fields that name a vote's judge and subject (``Vote(**provenance(...), ...)``)."""

    judge: str
    judge_version: str
    request_id: str
    candidate_id: str


def provenance(judge: Judge, request: Request, candidate: Candidate | None) -> Provenance:
    """The fields every vote of ``judge`` on this call carries (judge, version, ids)."""
    return {"judge": judge.name, "judge_version": judge.version, "request_id": request.id,
            "candidate_id": subject_of(candidate)}


def subject_of(candidate: Candidate | None) -> str:
    """Ballot subject for a judge call: the candidate id, or ``'*'`` for pairwise calls."""
    return PAIRWISE_SUBJECT if candidate is None else candidate.id
