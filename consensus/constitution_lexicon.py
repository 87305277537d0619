"""Lexicons: named term lists that a constitution's regex patterns use as ``{{name}}``.

:func:`expand_lexicons` replaces each reference, at load and before validation, by the
lexicon's :func:`lexicon_regex` (a trie of its terms, case- and leetspeak-tolerant).

Example:
    >>> expand_lexicons({"lexicons": {"pets": ["cat"]},
    ...     "principles": [{"checks": [{"regex": "my {{pets}}"}]}]})["principles"][0]["checks"]
    [{'regex': 'my (?:[cC][aA4@][tT])'}]
"""

from __future__ import annotations

from typing import Any

import regex

from consensus.constitution_checks import LEET_EQUIVALENTS
from consensus.errors import ConfigError

LEXICON_REF = regex.compile(r"\{\{([A-Za-z0-9_]+)\}\}")
"""A lexicon reference inside a pattern: ``{{groups}}``."""


def _lexicon_key(ch: str) -> str:
    """The trie key of a lexicon character: one key for the separators between words, else the
    lower-case character (its class adds the upper case and the leetspeak equivalents)."""
    return " " if ch.isspace() or ch == "-" else ch.lower()


def _lexicon_class(key: str) -> str:
    if key == " ":
        return "[\\s-]+"
    # Leetspeak for vowels and s only: digits for l, g, b, t, z would make group names match
    # numbers and codes ("7rans", "8lack" are rare; "1ndians" is not).
    chars = key + key.upper() + (LEET_EQUIVALENTS.get(key, "") if key in "aeios" else "")
    chars = "".join(dict.fromkeys(chars))
    return regex.escape(chars) if len(chars) == 1 else "[" + regex.escape(chars) + "]"


def lexicon_regex(terms: tuple[str, ...] | list[str]) -> str:
    """The regex of a lexicon: its terms as a trie (one branch per next character, so a search
    costs the same with ten terms or a thousand), case-insensitive, leetspeak-tolerant (a letter
    also matches its :data:`~consensus.constitution_checks.LEET_EQUIVALENTS`, as keywords do: ``Musl1ms``, ``bl4ck``), any run
    of spaces or hyphens between words. A term that is a prefix of another still matches.

    Example:
        >>> print(lexicon_regex(["gay men", "gays"]))
        (?:[gG][aA4@][yY](?:[\\s-]+[mM][eE3][nN]|[sS5\\$]))
    """
    trie: dict[str, Any] = {}
    for t in terms:
        node = trie
        for ch in " ".join(t.split()):
            node = node.setdefault(_lexicon_key(ch), {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [_lexicon_class(k) + emit(v) for k, v in sorted(node.items()) if k]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:  # a term ends here: the rest is optional
            return "(?:" + body + ")?"
        return body
    return "(?:" + emit(trie) + ")"


def expand_lexicons(data: dict[str, Any], *, source: str = "<constitution>") -> dict[str, Any]:
    """Replace ``{{name}}`` in regex patterns and ``unless`` items by the lexicon's alternation.

    A constitution states a term list once (say, protected groups) and several patterns use it,
    so every term is matched by exactly the same patterns (a bias filter must not treat one
    group differently from another). An unknown name is a ConfigError naming the field.
    """
    lex = data.get("lexicons")
    if lex is None:
        lex = {}
    if not isinstance(lex, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and v
            and all(isinstance(t, str) and t.strip() for t in v) for k, v in lex.items()):
        raise ConfigError("lexicons must map names to non-empty lists of terms",
                          source=source, field="lexicons")
    alts = {k: lexicon_regex(v) for k, v in lex.items()}
    principles = data.get("principles")
    if not isinstance(principles, list):
        return data

    def sub(text: Any, where: str) -> Any:
        if not isinstance(text, str):
            return text

        def one(m: regex.Match[str]) -> str:
            if m.group(1) not in alts:
                raise ConfigError(f"unknown lexicon {m.group(1)!r}; defined: "
                                  f"{sorted(alts) or 'none'}", source=source, field=where)
            return alts[m.group(1)]
        return LEXICON_REF.sub(one, text)

    out = []
    for i, p in enumerate(principles):
        checks = p.get("checks") if isinstance(p, dict) else None
        if not isinstance(checks, list):
            out.append(p)
            continue
        new_checks = []
        for j, c in enumerate(checks):
            if isinstance(c, dict):
                where = f"principles.{i}.checks.{j}"
                c = {k: (sub(v, f"{where}.{k}") if k in ("regex", "pattern") else
                         [sub(u, f"{where}.unless.{n}") for n, u in enumerate(v)]
                         if k == "unless" and isinstance(v, list) else v)
                     for k, v in c.items()}
            new_checks.append(c)
        out.append({**p, "checks": new_checks})
    return {**data, "principles": out}

