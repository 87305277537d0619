"""Python's parse trees of regular expressions, for :mod:`consensus.lint_regex`.

:func:`parse` builds the tree with Python's own regex parser (the ``regex`` module's ``\\p{..}``
classes are read as ``\\w``). :func:`ways` counts, capped at 2, the ways a piece of the tree
matches the runs ``c``, ``cc``, ... of one character ``c`` of up to :data:`RUN` characters, the
measure the static analysis judges quantifiers by. :func:`sample` writes a short text a piece
matches (the probes start from it) and :func:`render` writes a piece back as a pattern (for the
findings' messages).

Example:
    >>> tree = parse(r"(?:a|aa)+", regex.IGNORECASE)  # "aa" two ways: a+a, or aa
    >>> render(tree), sample(tree), ways(tree, "a", True, False)
    ('(?:a(?:|a))+', 'a', (0, 1, 2, 2, 2, 2, 2))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import regex

RUN = 6
"""Longest run of one character the static analysis counts matches of."""
COMMON = "a1 _.-,\n\tA!@/:é"
"""Characters worth trying besides the pattern's own (and what :func:`sample` picks from)."""
MAXREPEAT = int(sre.MAXREPEAT)
"""The upper bound of an unbounded quantifier in the tree."""
REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)
"""The tree's greedy and lazy quantifiers (possessive ones never give back what they match)."""
_UNICODE_CLASS = re.compile(r"\\([pP])(\{[^}]*\}|[A-Za-z])")

Ways = tuple[int, ...]
"""Ways (capped at 2) a node matches the runs c^0 .. c^RUN of one character c."""


def parse(pattern: str, flags: int) -> Any | None:
    """Python's parse tree of the pattern (``\\p{..}`` read as ``\\w``), or None."""
    text = _UNICODE_CLASS.sub(lambda m: "\\w" if m.group(1) == "p" else "\\W", pattern)
    text = text.replace("\\m", "\\b").replace("\\M", "\\b")
    py = ((re.IGNORECASE if flags & regex.IGNORECASE else 0)
          | (re.MULTILINE if flags & regex.MULTILINE else 0)
          | (re.DOTALL if flags & regex.DOTALL else 0)
          | (re.VERBOSE if flags & regex.VERBOSE else 0))
    try:
        return sre_parse.parse(text, py)
    except (re.error, RecursionError, OverflowError, ValueError, TypeError):
        return None


# --- matching runs of one character ---------------------------------------------------------

def _same(a: str, b: str, icase: bool) -> bool:
    return a == b or (icase and a.casefold() == b.casefold())


def _category(cat: Any, c: str) -> bool:
    name = str(cat)
    if "DIGIT" in name:
        hit = c.isdecimal()
    elif "SPACE" in name:
        hit = c.isspace()
    elif "WORD" in name:
        hit = c.isalnum() or c == "_"
    elif "LINEBREAK" in name:
        hit = c == "\n"
    else:
        return False
    return hit != ("NOT" in name)


def _in_class(items: Sequence[tuple[Any, Any]], c: str, icase: bool) -> bool:
    negate = False
    hit = False
    for op, av in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            hit = hit or _same(c, chr(av), icase)
        elif op is sre.RANGE:
            lo, hi = av
            hit = hit or any(lo <= ord(x) <= hi for x in {c, c.lower(), c.upper()}
                             if icase or x == c)
        elif op is sre.CATEGORY:
            hit = hit or _category(av, c)
    return hit != negate


def _consumes(op: Any, av: Any, c: str, icase: bool, dotall: bool) -> bool | None:
    """Whether a one-character node matches ``c`` (None: not a one-character node)."""
    if op is sre.LITERAL:
        return _same(c, chr(av), icase)
    if op is sre.NOT_LITERAL:
        return not _same(c, chr(av), icase)
    if op is sre.ANY:
        return dotall or c != "\n"
    if op is sre.IN:
        return _in_class(av, c, icase)
    return None


EMPTY: Ways = (1,) + (0,) * RUN
NONE: Ways = (0,) * (RUN + 1)


def _conv(a: Ways, b: Ways) -> Ways:
    return tuple(min(2, sum(a[i] * b[k - i] for i in range(k + 1))) for k in range(RUN + 1))


def _add(a: Ways, b: Ways) -> Ways:
    return tuple(min(2, x + y) for x, y in zip(a, b, strict=True))


def scoped_flags(add: int, remove: int, icase: bool, dotall: bool) -> tuple[bool, bool]:
    """(ignore case, dot-all) inside a group that adds and removes inline flags."""
    icase = (icase or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE
    dotall = (dotall or bool(add & re.DOTALL)) and not remove & re.DOTALL
    return icase, dotall


def ways(seq: Any, c: str, icase: bool, dotall: bool) -> Ways:
    """Ways the tree items ``seq`` match the runs of ``c`` (:data:`Ways`)."""
    out = EMPTY
    for op, av in seq:
        out = _conv(out, node_ways(op, av, c, icase, dotall))
        if out == NONE:
            break
    return out


def node_ways(op: Any, av: Any, c: str, icase: bool, dotall: bool) -> Ways:
    """Ways one tree node matches the runs of ``c`` (:data:`Ways`)."""
    one = _consumes(op, av, c, icase, dotall)
    if one is not None:
        return (0, 1) + (0,) * (RUN - 1) if one else NONE
    if op is sre.BRANCH:
        out = NONE
        for branch in av[1]:
            out = _add(out, ways(branch, c, icase, dotall))
        return out
    if op is sre.SUBPATTERN:
        _, add, remove, body = av
        return ways(body, c, *scoped_flags(add, remove, icase, dotall))
    if op in REPEATS:
        lo, hi, body = av
        return _repeat(lo, hi, ways(body, c, icase, dotall))
    if op is sre.GROUPREF_EXISTS:
        _, yes, no = av
        return _add(ways(yes, c, icase, dotall),
                    ways(no, c, icase, dotall) if no is not None else EMPTY)
    # Anchors, lookarounds, back-references; atomic groups and possessive quantifiers, which
    # never give back what they matched: zero-width here (a heuristic, see the module).
    return EMPTY


def _repeat(lo: int, hi: int, body: Ways) -> Ways:
    nonempty = (0, *body[1:])
    total = EMPTY if lo == 0 else NONE
    v = EMPTY
    for i in range(1, min(hi, min(lo, 64) + RUN + 1) + 1):
        v = _conv(v, body if i <= lo else nonempty)
        if i >= lo:
            total = _add(total, v)
        if v == NONE:
            break
    return total


# --- reading and writing the tree -----------------------------------------------------------

def children(op: Any, av: Any) -> list[Any]:
    """The item sequences nested in one tree node."""
    if op is sre.BRANCH:
        return list(av[1])
    if op is sre.SUBPATTERN:
        return [av[3]]
    if op in (*REPEATS, sre.POSSESSIVE_REPEAT):
        return [av[2]]
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [av[1]]
    if op is sre.ATOMIC_GROUP:
        return [av]
    if op is sre.GROUPREF_EXISTS:
        return [av[1]] + ([av[2]] if av[2] is not None else [])
    return []


def sample(seq: Any) -> str:
    """A short text the parse-tree items ``seq`` match (best effort: lookarounds are ignored).

    Example:
        >>> sample(sre_parse.parse(r"ab\\d{2}(?:x|y)"))
        'ab11x'
    """
    out = []
    for op, av in seq:
        if op is sre.LITERAL:
            out.append(chr(av))
        elif op is sre.NOT_LITERAL:
            out.append("a" if chr(av) != "a" else "b")
        elif op is sre.ANY:
            out.append("a")
        elif op is sre.IN:
            out.append(next((c for c in COMMON + "bcdxyz0" if _in_class(av, c, False)), ""))
        elif op is sre.BRANCH:
            out.append(sample(av[1][0]) if av[1] else "")
        elif op is sre.SUBPATTERN:
            out.append(sample(av[3]))
        elif op in (*REPEATS, sre.POSSESSIVE_REPEAT):
            out.append(sample(av[2]) * min(av[0], 64))
        elif op is sre.ATOMIC_GROUP:
            out.append(sample(av))
    return "".join(out)


_AT = {"AT_BEGINNING": "^", "AT_BEGINNING_STRING": "\\A", "AT_END": "$", "AT_END_STRING": "\\Z",
       "AT_BOUNDARY": "\\b", "AT_NON_BOUNDARY": "\\B"}
_CATEGORY = {"CATEGORY_DIGIT": "\\d", "CATEGORY_NOT_DIGIT": "\\D", "CATEGORY_SPACE": "\\s",
             "CATEGORY_NOT_SPACE": "\\S", "CATEGORY_WORD": "\\w", "CATEGORY_NOT_WORD": "\\W"}


def render(seq: Any) -> str:
    """Parse-tree items written back as a pattern (``\\p{..}`` shows as ``\\w``).

    Example:
        >>> render(sre_parse.parse(r"(?:\\w+\\s?)+x"))
        '(?:\\\\w+\\\\s?)+x'
    """
    out = []
    for op, av in seq:
        if op is sre.LITERAL:
            out.append(re.escape(chr(av)))
        elif op is sre.NOT_LITERAL:
            out.append(f"[^{re.escape(chr(av))}]")
        elif op is sre.ANY:
            out.append(".")
        elif op is sre.IN:
            items = "".join(_render_item(o, a) for o, a in av)
            single = len(av) == 1 and av[0][0] is sre.CATEGORY
            out.append(items if single else f"[{items}]")
        elif op is sre.BRANCH:
            out.append("(?:" + "|".join(render(b) for b in av[1]) + ")")
        elif op is sre.SUBPATTERN:
            out.append(("(" if av[0] else "(?:") + render(av[3]) + ")")
        elif op in (*REPEATS, sre.POSSESSIVE_REPEAT):
            body = list(av[2])
            inner = render(body)
            if len(body) > 1 or (body and body[0][0] is sre.BRANCH):
                inner = f"(?:{inner})"
            out.append(inner + _quantifier(av[0], av[1])
                       + ("?" if op is sre.MIN_REPEAT else "+" if op is not sre.MAX_REPEAT
                          else ""))
        elif op is sre.AT:
            out.append(_AT.get(str(av), ""))
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            look = ("=" if op is sre.ASSERT else "!") if av[0] >= 0 else \
                ("<=" if op is sre.ASSERT else "<!")
            out.append(f"(?{look}{render(av[1])})")
        elif op is sre.ATOMIC_GROUP:
            out.append(f"(?>{render(av)})")
        elif op is sre.GROUPREF:
            out.append(f"\\{av}")
    return "".join(out)


def _render_item(op: Any, av: Any) -> str:
    if op is sre.NEGATE:
        return "^"
    if op is sre.LITERAL:
        return re.escape(chr(av))
    if op is sre.RANGE:
        return f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}"
    return _CATEGORY.get(str(av), "")


def _quantifier(lo: int, hi: int) -> str:
    if hi == MAXREPEAT:
        return {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    if lo == 0 and hi == 1:
        return "?"
    return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"

