"""Bearer tokens of the service: where they come from, how they are checked, what they allow.

Tokens come from ``CONSENSUS_API_TOKENS`` (or the variable ``--tokens-env`` names) or from a
file (``--tokens-file``), one entry per line or comma: ``name:token`` or a bare ``token`` (named
``token-1``, ``token-2``, ...). The service keeps only SHA-256 digests, compares a presented
token against every digest with :func:`hmac.compare_digest` (constant time, and no early exit
on the first match), and never writes a token, a digest or an Authorization header anywhere: a
principal is known by its name. The service YAML's ``access:`` says which panels and policies
each name may choose.

Example:
    >>> t = Tokens.parse("ci:s3cret-token-1234, bare-token-abcdefgh")
    >>> t.check("Bearer s3cret-token-1234"), t.check("Bearer nope"), t.check(None)
    ('ci', None, None)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from consensus.errors import ConfigError
from consensus.files import read_text

TOKENS_ENV = "CONSENSUS_API_TOKENS"
MIN_TOKEN_CHARS = 16
"""Shorter tokens are refused at start: a guessable token is no authentication."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Tokens:
    """The accepted tokens, as (name, digest) pairs."""

    entries: tuple[tuple[str, bytes], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    @classmethod
    def parse(cls, text: str, *, source: str = TOKENS_ENV) -> Tokens:
        """Entries from ``text`` (lines or commas; ``#`` starts a comment)."""
        entries: list[tuple[str, bytes]] = []
        names: set[str] = set()
        raw = [part.strip() for line in text.splitlines()
               for part in line.split("#", 1)[0].split(",")]
        for i, item in enumerate(p for p in raw if p):
            name, sep, token = item.partition(":")
            if not sep:
                name, token = f"token-{i + 1}", item
            name, token = name.strip(), token.strip()
            if len(token) < MIN_TOKEN_CHARS:
                # the message names the entry, never its characters
                raise ConfigError(f"token {name!r} is shorter than {MIN_TOKEN_CHARS} characters",
                                  source=source, field=f"entry {i + 1}")
            if name in names:
                raise ConfigError(f"two tokens are named {name!r}", source=source,
                                  field=f"entry {i + 1}")
            names.add(name)
            entries.append((name, _digest(token)))
        return cls(tuple(entries))

    @classmethod
    def load(cls, *, env: str = TOKENS_ENV, file: Path | None = None) -> Tokens:
        """Tokens from the file when given, else from the environment variable ``env``."""
        if file is not None:
            return cls.parse(read_text(file), source=str(file))
        return cls.parse(os.environ.get(env, ""), source=env)

    def names(self) -> list[str]:
        return [n for n, _ in self.entries]

    def check(self, authorization: str | None) -> str | None:
        """The name of the token in an ``Authorization: Bearer <token>`` header, else None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = _digest(token.strip())
        found = None
        for name, digest in self.entries:  # no early exit: the time does not tell which
            if hmac.compare_digest(presented, digest):
                found = name
        return found


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes the service to this machine only."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def require_tokens(host: str, tokens: Tokens, *, why: str | None = None) -> None:
    """Refuse to start on a non-loopback address without tokens (fail closed); ``why`` names
    what binds it when that is not ``--host``."""
    if not tokens and not is_loopback(host):
        what = (f"{why} makes the service listen on {host}, beyond this machine" if why
                else f"binding {host} exposes the service beyond this machine")
        raise ConfigError(
            f"{what}, so it needs bearer tokens: set {TOKENS_ENV} (name:token entries) or "
            "pass --tokens-file", field="--ingress" if why else "--host")
