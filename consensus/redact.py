"""Secrets never leave the process: one redactor for logs, votes, reports and the store.

Two mechanisms, applied together by :func:`redact`:

* **patterns**: key-like substrings of the providers we know (``sk-...``, ``sk-ant-...``,
  ``AKIA...``, ``ghp_...``, ``xox?-...``, ``AIza...``, bearer tokens, private key blocks,
  ``api_key=...`` assignments), also when a provider echoes them partly masked
  (``sk-proj-****abcd``);
* **known values**: the secrets this process holds (API keys read from the environment), and any
  fragment of six or more of their characters, so a provider that echoes the last eight
  characters of a key does not leak them either.

:class:`~consensus.types.Vote` redacts its critique and abstention reason with the patterns when
it is built, so whatever a judge writes is clean in ``votes.csv``, ``decisions.jsonl``, the
report and the store; judges that hold a key also pass it as a known value.

Example:
    >>> redact("Incorrect API key provided: sk-proj-********************wxyz.")
    'Incorrect API key provided: ***.'
    >>> redact("key ...9f8e7d6c5b4a rejected", secrets=["sk-live-0a1b2c3d9f8e7d6c5b4a"])
    'key ...*** rejected'
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable

import regex

MASK = "***"
FRAGMENT = 6
"""Characters of a known secret that count as a leak when they appear together."""

_PATTERNS = (
    r"(?<=Bearer )[\w.\-~+/=*]+",
    r"(?<=Basic )[A-Za-z0-9+/=]{8,}",
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{4,}[A-Za-z0-9*]",
    r"\b[sr]k_(?:live|test)_[A-Za-z0-9*]{8,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z*]{12,}",
    r"\bgh[pousr]_[A-Za-z0-9*]{12,}",
    r"\bgithub_pat_[A-Za-z0-9_*]{12,}",
    r"\bxox[abposr]-[A-Za-z0-9\-*]{8,}",
    r"\bAIza[0-9A-Za-z_\-*]{12,}",
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)",
    r"\bhf_[A-Za-z0-9]{20,}",
    r"\bgsk_[A-Za-z0-9]{20,}",
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JSON web tokens
    r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)",  # user:password@ in URLs
    r"(?<=Token )[A-Za-z0-9._\-]{12,}",
    # values of secret-named assignments: key=..., key: ..., "key": "...", KEY="..."
    (r"(?i:(?<=api_key)|(?<=api-key)|(?<=apikey)|(?<=secret_access_key)|(?<=secret_key)"
     r"|(?<=access_token)|(?<=auth_token)|(?<=password)|(?<=passwd)|(?<=client_secret))"
     r"[\"']?\s*[:=]\s*[\"']?\K[^\s&\"',;]{6,}"),
)
SECRET_PATTERN = regex.compile("|".join(_PATTERNS))  # regex: \\K and variable look-behinds
_LITERALS = (
    "Bearer ", "Basic ", "sk-", "pk-", "rk-", "k_live_", "k_test_", "AKIA", "ASIA", "ghp_",
    "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "AIza", "-----BEGIN ", "hf_", "gsk_",
    "eyJ", "://", "Token ",
)
_LITERALS_ANY_CASE = (
    "api_key", "api-key", "apikey", "secret_access_key", "secret_key", "access_token",
    "auth_token", "password", "passwd", "client_secret",
)
"""Every match of :data:`SECRET_PATTERN` holds one of these literals, in its text or in its
look-behind: :data:`_LITERALS` as written, :data:`_LITERALS_ANY_CASE` in any case (those of the
``(?i:...)`` group). A text without any of them has nothing to mask and is not scanned (the scan
costs about 1 us per character; a text that holds one, e.g. ``task-`` for ``sk-``, is only
scanned). A pattern added to ``_PATTERNS`` needs its literal here."""
_FOLD = {0x130: "i", 0x17F: "s", 0x212A: "k"}
"""The characters that ``regex`` matches for an ASCII letter under ``(?i)`` (İ, long s, Kelvin
sign), mapped to that letter, so that case-insensitive matches survive :func:`_folded`."""
SECRET_KEYS = re.compile(r"(api[_-]?key|token|secret|password|authorization|bearer)", re.IGNORECASE)
"""Mapping keys whose values are secrets whatever they look like (structured logs)."""


SECRET_ENV = re.compile(r"(?i)(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$")
"""Environment variables whose values are secrets, by name (OPENAI_API_KEY, HF_TOKEN, ...)."""
_KNOWN: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Add values that :func:`redact` masks everywhere in this process (with their fragments)."""
    _KNOWN.update(v for v in values if v and len(v) >= FRAGMENT)


def register_secrets_from_env(environ: dict[str, str] | None = None) -> None:
    """Register the values of secret-named environment variables (called at the edge: CLI
    start, judge host start; never at import)."""
    env = os.environ if environ is None else environ
    register_secrets(v for k, v in env.items() if SECRET_ENV.search(k))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every key-like substring and every fragment of a known secret masked
    (``secrets`` and those registered in this process)."""
    if not text:
        return text
    for s in (*secrets, *_KNOWN):
        if s and len(s) >= FRAGMENT:
            text = _mask_fragments(text, s)
    if not _may_match(text):
        return text
    return SECRET_PATTERN.sub(MASK, text)


def _may_match(text: str) -> bool:
    """False when :data:`SECRET_PATTERN` cannot match ``text`` (it holds none of the literals
    every match needs)."""
    if any(t in text for t in _LITERALS):
        return True
    folded = _folded(text)
    return any(t in folded for t in _LITERALS_ANY_CASE)


def _folded(text: str) -> str:
    """``text`` in lower case, with the characters of :data:`_FOLD` replaced: it holds a literal
    of :data:`_LITERALS_ANY_CASE` wherever ``text`` matches one under ``(?i)`` (``lower`` alone
    would turn İ into two characters and keep the long s)."""
    return (text if text.isascii() else text.translate(_FOLD)).lower()


@functools.lru_cache(maxsize=256)
def _grams(secret: str) -> frozenset[str]:
    """The windows of FRAGMENT characters of ``secret``."""
    return frozenset(secret[i:i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1))


def _mask_fragments(text: str, secret: str) -> str:
    """Mask every run of ``text`` made of windows of FRAGMENT characters found in ``secret``."""
    if secret in text:
        text = text.replace(secret, MASK)
    grams = _grams(secret)
    if not any(g in text for g in grams):  # the usual case, found without a loop in Python
        return text
    spans: list[list[int]] = []
    for i in range(len(text) - FRAGMENT + 1):
        if text[i:i + FRAGMENT] in grams:
            if spans and i <= spans[-1][1]:
                spans[-1][1] = i + FRAGMENT
            else:
                spans.append([i, i + FRAGMENT])
    for start, end in reversed(spans):
        text = text[:start] + MASK + text[end:]
    return text
