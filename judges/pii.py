"""Personal data and secret detectors of the rules judge: e-mail, phone, card, IBAN, API key.

Each detector takes the text and a :class:`~judges.budget.Scanner` and returns the
``[start, end)`` spans it found. The scanner runs the detector's patterns: the rules judge passes
a :class:`~judges.budget.Budget`, which bounds every search by the time left for the call (and is
how the judge runs its other patterns too); :data:`~judges.budget.UNBOUNDED` runs them plainly (the patterns here are linear-time, so that is safe for
direct use). Matches are validated where a checksum exists (Luhn for cards, ISO 13616 mod-97 for
IBANs) and by entropy for assigned secrets.

Example:
    >>> DETECTORS["credit_card"]("card 4539 9542 5550 3492 exp 09/27")
    [(5, 24)]
    >>> mask("4539954255503492")
    '4539****3492'
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Protocol

import regex

from judges.budget import UNBOUNDED, Scanner


def mask(value: str) -> str:
    """Hide the middle of a matched secret: ``4111111111111111`` -> ``4111****1111``."""
    if "@" in value and " " not in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    keep = 4 if len(value) >= 12 else 2 if len(value) >= 6 else 1
    return value[:keep] + "****" + value[-keep:] if len(value) > 2 * keep else "****"


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 mod-97 check of a compact, upper-case IBAN."""
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(k / n * math.log2(k / n) for k in Counter(s).values()) if n else 0.0


# The detector patterns run on the judge's engine (``regex``), so a scanner can bound them; the
# small helpers on an already matched, bounded value (``re.sub(r"\D", ...)``) stay on ``re``.
_EMAIL = regex.compile(r"(?<![\w.+-])[A-Za-z0-9][\w.%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.){1,8}"
                       r"[A-Za-z]{2,24}(?![\w-])")
_PHONE = regex.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}"
                       r"(?:[ .-]?\d{2,4}){1,4}(?![\w])")
_CARD = regex.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = regex.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,34}\b")
_KEY_PATTERNS = (
    r"\bsk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{20,}",
    r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}", r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"\bAIza[0-9A-Za-z_-]{35}",
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----",
)
_KEYS = regex.compile("|".join(_KEY_PATTERNS))
_ASSIGNED = regex.compile(
    r"(?i)(?<![A-Za-z0-9])(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?key|auth[_-]?token|"
    r"token|password|passwd|client[_-]?secret)[\"']?\s*[:=]\s*[\"']?([^\s\"'`,;]{12,})")
_PLACEHOLDER = regex.compile(
    r"(?i)example|placeholder|your|xxxx|changeme|redacted|\.\.\.|<|\*\*")

Span = tuple[int, int]


def _emails(text: str, scan: Scanner = UNBOUNDED) -> list[Span]:
    return [m.span() for m in scan.finditer(_EMAIL, text)]


def _phones(text: str, scan: Scanner = UNBOUNDED) -> list[Span]:
    out = []
    numbers = _cards(text, scan) + _ibans(text, scan)  # their digit groups look like phones
    for m in scan.finditer(_PHONE, text):
        if any(s < m.end() and m.start() < e for s, e in numbers):
            continue
        s = m.group()
        digits = re.sub(r"\D", "", s)
        formatted = s.startswith("+") or "(" in s or len(re.findall(r"[ .-]", s)) >= 2
        if 9 <= len(digits) <= 15 and formatted and not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", s):
            out.append(m.span())
    return out


def _cards(text: str, scan: Scanner = UNBOUNDED) -> list[Span]:
    return [m.span() for m in scan.finditer(_CARD, text)
            if luhn_ok(re.sub(r"\D", "", m.group()))]


def _ibans(text: str, scan: Scanner = UNBOUNDED) -> list[Span]:
    out = []
    for m in scan.finditer(_IBAN, text):
        pos = [m.start() + i for i, c in enumerate(m.group()) if c != " "]
        compact = m.group().replace(" ", "")
        # The regex may run into a following word; keep the longest prefix that checks out.
        for n in range(len(compact), 14, -1):
            if iban_ok(compact[:n]):
                out.append((m.start(), pos[n - 1] + 1))
                break
    return out


def _api_keys(text: str, scan: Scanner = UNBOUNDED) -> list[Span]:
    out = [m.span() for m in scan.finditer(_KEYS, text)
           if not scan.search(_PLACEHOLDER, m.group())]
    for m in scan.finditer(_ASSIGNED, text):
        v = m.group(1)
        if (re.search(r"[A-Za-z]", v) and re.search(r"\d", v) and entropy(v) >= 3.0
                and not scan.search(_PLACEHOLDER, v)):
            out.append(m.span(1))
    return out


def compact(detector: str, value: str) -> str:
    """Drop the separators of numbers so that masking hides digits, not spaces."""
    return re.sub(r"[^0-9A-Za-z+]", "", value) if detector in ("credit_card", "iban", "phone") \
        else value


class Detector(Protocol):
    """A detector: the spans of its kind of data in ``text``."""

    def __call__(self, text: str, scan: Scanner = ..., /) -> list[Span]: ...


DETECTORS: dict[str, Detector] = {
    "api_key": _api_keys, "credit_card": _cards, "iban": _ibans,
    "email": _emails, "phone": _phones,
}
"""PII detectors in priority order: a later detector's hit overlapping an earlier one is dropped."""
