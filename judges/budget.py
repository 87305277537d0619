"""Patterns run within a time budget: how the rules judge keeps its timeout.

A :class:`Budget` is the time left for one judge call; every search it runs is bounded by that
time (``regex``'s ``timeout=``), so a catastrophic pattern costs the call, never a stalled
actor. :data:`UNBOUNDED` runs patterns plainly, for linear-time patterns used directly. Both
implement the :class:`Scanner` protocol that the PII detectors and the rules judge's checks use.

Example:
    >>> b = Budget(1.0)
    >>> b.search(regex.compile("b+"), "abba").span()
    (1, 3)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import regex


class Scanner(Protocol):
    """Runs a pattern over a text (the rules judge's implementation bounds it in time)."""

    def finditer(self, rx: regex.Pattern[str], text: str) -> Iterator[regex.Match[str]]:
        """The matches of ``rx`` in ``text``, as ``rx.finditer(text)`` gives them."""
        ...

    def search(self, rx: regex.Pattern[str], text: str) -> regex.Match[str] | None:
        """The first match of ``rx`` in ``text``, as ``rx.search(text)`` gives it."""
        ...


class _Unbounded:
    def finditer(self, rx: regex.Pattern[str], text: str) -> Iterator[regex.Match[str]]:
        return rx.finditer(text)

    def search(self, rx: regex.Pattern[str], text: str) -> regex.Match[str] | None:
        return rx.search(text)


UNBOUNDED: Scanner = _Unbounded()
"""A scanner without a time limit."""
_T = TypeVar("_T")

HELD_SLICE_S = 0.005
"""How long a search may first run holding the GIL before it is redone releasing it."""


class Budget:
    """The time left for one judge call; runs patterns so that none outlives it.

    Every search is bounded by the remaining time (``timeout=``; past the deadline it raises
    ``TimeoutError``). A search first runs for at most :data:`HELD_SLICE_S` holding the GIL,
    which is all nearly every search needs; one that takes longer is redone with the rest of
    the budget releasing the GIL (``concurrent=True``), so that a slow pattern cannot hold up
    the event loop or the other judges' threads. (Releasing it for every search would cost a
    thread hand-off each, which adds up under load.) Implements the :class:`Scanner` protocol.

    Example:
        >>> b = Budget(1.0)
        >>> [m.span() for m in b.finditer(regex.compile("a*"), "baa")]
        [(0, 0), (1, 3), (3, 3)]
    """

    def __init__(self, seconds: float, *, shown: float | None = None):
        self.seconds = seconds
        self.shown = seconds if shown is None else shown  # the figure timeout reasons quote
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        """Seconds left (``TimeoutError`` when none)."""
        left = self.deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("budget exhausted")
        return left

    def _bounded(self, run: Callable[[bool, float], _T]) -> _T:
        """``run(concurrent, timeout)``: a held slice first, then the rest released."""
        left = self.left()
        if left > HELD_SLICE_S:
            try:
                return run(False, HELD_SLICE_S)
            except TimeoutError:
                left = self.left()
        return run(True, left)

    def search(self, rx: regex.Pattern[str], text: str) -> regex.Match[str] | None:
        """``rx.search(text)`` within the time left."""
        return self._bounded(lambda conc, limit: rx.search(text, concurrent=conc, timeout=limit))

    def finditer(self, rx: regex.Pattern[str], text: str) -> Iterator[regex.Match[str]]:
        """``rx.finditer(text)``, every step within the time left.

        A scanner's ``timeout`` bounds each of its steps, not their sum, so each match is looked
        for by a new scanner from where the last one ended; after an empty match the new scanner
        finds it again first, and its next step then moves on as the old one would have.
        """
        pos, after_empty = 0, -1

        def step(conc: bool, limit: float) -> regex.Match[str] | None:
            scan = rx.finditer(text, pos, concurrent=conc, timeout=limit)
            m = next(scan, None)
            if m is not None and m.start() == m.end() == after_empty:
                m = next(scan, None)
            return m

        while (m := self._bounded(step)) is not None:
            yield m
            pos = m.end()
            after_empty = pos if m.start() == pos else -1
