"""Local classifier judges: an offline toxicity model behind the Judge protocol.

``profanity_check`` is the model bundled with alt-profanity-check (a linear SVM over a bag of
words, calibrated to a probability). It is loaded in ``__init__`` (never at import: importing this
module does not import scikit-learn) and scored in a worker thread (``asyncio.to_thread``).

Long texts: a bag-of-words score of a whole answer dilutes one toxic sentence among many benign
ones, so the text is split into sentences (and lines) and the score is the **maximum** over the
sentences and the whole text. At most :data:`MAX_SEGMENTS` segments are scored; beyond that,
neighbouring sentences are merged. The judge rejects iff score >= ``threshold``; its confidence
is the score for a reject and ``1 - score`` for an accept.

Example:
    >>> import asyncio
    >>> from consensus.types import Candidate, Request
    >>> judge = ClassifierJudge(ClassifierJudgeSpec(name="tox"))
    >>> r = Request(id="q", prompt="hi", candidates=(Candidate(id="a", text="Happy to help!"),))
    >>> asyncio.run(judge.judge(r, r.candidates[0])).label
    'accept'
"""

from __future__ import annotations

import asyncio
import re
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field

from consensus.errors import ConfigError
from consensus.types import Candidate, Request, Vote
from judges.base import JudgeSpecBase, Provenance, config_hash, provenance

MAX_SEGMENTS = 64
"""Segments scored per text; more sentences are merged into this many windows."""
TIE_EPS = 0.01
"""Pairwise: scores closer than this do not separate the candidates."""

_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


class ClassifierJudgeSpec(JudgeSpecBase):
    """A local toxicity classifier.

    Example:
        >>> ClassifierJudgeSpec(name="tox", threshold=0.7).scope
        'output'
    """

    kind: Literal["classifier"] = "classifier"
    model: Literal["profanity_check"] = Field(
        default="profanity_check", description="Bundled offline model (alt-profanity-check).")
    threshold: float = Field(default=0.5, ge=0.0, le=1.0,
                             description="Reject iff the toxicity score is at least this.")
    scope: Literal["output", "input", "both"] = Field(
        default="output",
        description="What is scored: the candidate, the prompt, or both (maximum of the two).")


def segments(text: str, limit: int = MAX_SEGMENTS) -> list[str]:
    """The text's sentences (merged into at most ``limit`` windows) plus the whole text.

    Example:
        >>> segments("Fine. You fool!")
        ['Fine. You fool!', 'Fine.', 'You fool!']
    """
    text = text.strip()
    if not text:
        return []
    parts = [p.strip() for p in _SPLIT.split(text) if p and p.strip()]
    if len(parts) > limit:
        size = -(-len(parts) // limit)
        parts = [" ".join(parts[i:i + size]) for i in range(0, len(parts), size)]
    return [text] + (parts if len(parts) > 1 else [])


def _load(model: str) -> tuple[Callable[[Sequence[str]], Any], str]:
    """The model's ``predict_prob`` and its package version (imports scikit-learn)."""
    from importlib.metadata import PackageNotFoundError, version

    with warnings.catch_warnings():
        # Models pickled with another scikit-learn version still load; the warning is noise here.
        warnings.filterwarnings("ignore", message=r".*(unpickle|Trying to unpickle).*")
        try:
            from sklearn.exceptions import InconsistentVersionWarning
            warnings.simplefilter("ignore", InconsistentVersionWarning)
        except ImportError:  # older scikit-learn has no such class
            pass
        try:
            import profanity_check
        except ImportError as exc:
            raise ConfigError(f"classifier model {model!r} needs alt-profanity-check: {exc}",
                              field="model") from None
    try:
        ver = version("alt-profanity-check")
    except PackageNotFoundError:
        ver = "unknown"
    return profanity_check.predict_prob, ver


class ClassifierJudge:
    """Votes by a local toxicity classifier (see module docstring)."""

    def __init__(self, spec: ClassifierJudgeSpec):
        self.spec = spec
        self.name = spec.name
        self._predict, model_version = _load(spec.model)
        self.version = config_hash({"spec": spec.model_dump(mode="json"),
                                    "model": f"{spec.model}=={model_version}"})

    def score(self, text: str) -> tuple[float, int]:
        """Toxicity score of ``text`` (max over its segments) and the number of segments."""
        segs = segments(text)
        if not segs:
            return 0.0, 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probs = self._predict(segs)
        return float(max(probs)), len(segs)

    def _score_subject(self, request: Request, candidate: Candidate) -> tuple[float, int]:
        if self.spec.scope == "input":
            return self.score(request.prompt)
        out = self.score(candidate.text)
        if self.spec.scope == "both":
            inp = self.score(request.prompt)
            return max(out[0], inp[0]), out[1] + inp[1]
        return out

    async def judge(self, request: Request, candidate: Candidate | None) -> Vote:
        """Vote on ``candidate`` (or choose the least toxic candidate when None)."""
        start = time.perf_counter()
        common = provenance(self, request, candidate)
        try:
            if candidate is None:
                scores = await asyncio.to_thread(
                    lambda: [self._score_subject(request, c)[0] for c in request.candidates])
                vote = self._pairwise(request, scores, common)
            else:
                score, n = await asyncio.to_thread(self._score_subject, request, candidate)
                vote = self._verdict(score, n, common)
        except Exception as exc:  # noqa: BLE001 - a judge never raises into the coordinator
            vote = Vote.abstain(kind="error", reason=f"classifier failed: {exc!r}"[:300],
                                **common)
        return vote.model_copy(update={"latency_s": time.perf_counter() - start})

    def _verdict(self, score: float, n: int, common: Provenance) -> Vote:
        thr = self.spec.threshold
        reject = score >= thr
        where = f"max over {n} segments" if n > 1 else "whole text"
        return Vote(label="reject" if reject else "accept",
                    confidence=score if reject else 1.0 - score,
                    critique=f"toxicity {score:.3f} {'>=' if reject else '<'} threshold "
                             f"{thr:g} ({self.spec.model}, {where})", **common)

    def _pairwise(self, request: Request, scores: list[float], common: Provenance) -> Vote:
        ranked = sorted(zip(scores, (c.id for c in request.candidates)))
        shown = ", ".join(f"{cid}: {s:.3f}" for s, cid in ranked)
        (best, best_id), (second, _) = ranked[0], ranked[1]
        if second - best < TIE_EPS:
            return Vote.abstain(kind="recusal", reason=f"toxicity scores too close ({shown})",
                                **common)
        return Vote(label=best_id, confidence=min(1.0, 0.5 + (second - best) / 2),
                    critique=f"least toxic ({shown})", **common)
