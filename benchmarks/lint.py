"""Constitution lint speed: the indexed lint against the old pairwise one, 500 to 2000 principles.

Synthetic constitutions mix keyword, regex and PII checks over both scopes, with a conflict
planted every 50 principles (a keyword repeated, in leetspeak, by a principle that only flags
it). The indexed lint (:func:`consensus.lint.lint`) should grow about linearly (time ratio
2000/1000 near 2); the old approach, kept here as :func:`pairwise_lint` (every pair of
principles compared, a regex compiled per pair), grows quadratically (ratio near 4). Both must
give the same warnings.

Usage::

    .venv/bin/python benchmarks/lint.py [--sizes 500 1000 2000] [--repeat 3] [--no-pairwise]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import regex

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.constitution import (
    Constitution,
    KeywordsCheck,
    LengthCheck,
    PiiCheck,
    Principle,
    RefusalCheck,
    RegexCheck,
    parse_constitution,
)
from consensus.constitution_checks import LEET_EQUIVALENTS
from consensus.lint import lint

DETECTORS = ("email", "phone", "credit_card", "iban", "api_key")
A = TypeVar("A")
R = TypeVar("R")


def synthetic_data(n: int) -> dict:
    """``n`` principles: 6/10 keywords, 3/10 regex, 1/10 PII; a planted conflict every 50."""
    ps: list[dict] = []
    for i in range(n):
        p: dict = {"id": f"p{i}", "text": f"principle {i}", "severity": "high",
                   "scope": "input" if i % 7 == 0 else "output"}
        kind = i % 10
        if kind < 6:
            p["checks"] = [{"keywords": [f"term{i} alpha", f"word{i}", f"quux{i} zed{i}"]}]
        elif kind < 9:
            p["checks"] = [{"regex": rf"\bpat{i}[0-9]+\b"}]
        else:
            p["checks"] = [{"pii": [DETECTORS[(i // 10) % 5]]}]
        if i % 50 == 49:  # repeats an earlier keyword (leet-spelled) but only flags it
            p.update(intervention="flag", scope=ps[i - 49]["scope"],
                     checks=[{"keywords": [f"w0rd{i - 49}"]}])
        ps.append(p)
    return {"principles": ps}


def synthetic(n: int) -> Constitution:
    """The constitution of :func:`synthetic_data`."""
    return parse_constitution(synthetic_data(n))


# --- the old approach, for comparison ----------------------------------------------------------

def _canon(phrase: str) -> tuple[str, ...]:
    fold = {c: k for k, vs in LEET_EQUIVALENTS.items() for c in vs if k != "l"}
    words = re.split(r"[^a-z0-9@$!|+]+", phrase.lower())
    return tuple("".join(fold.get(c, c) for c in w).replace("l", "i") for w in words if w)


def _contains(big: tuple[str, ...], small: tuple[str, ...]) -> bool:
    return any(big[i:i + len(small)] == small for i in range(len(big) - len(small) + 1))


def _overlaps(a: Principle, b: Principle) -> list[str]:
    out: list[str] = []
    for ca in a.checks:
        for cb in b.checks:
            for x, y in ((ca, cb), (cb, ca)):
                if isinstance(x, KeywordsCheck) and isinstance(y, KeywordsCheck):
                    out += [f"keyword {p!r}" for p in x.phrases for q in y.phrases
                            if _contains(_canon(p), _canon(q))
                            and (x is ca or _canon(p) != _canon(q))]
                if isinstance(x, RegexCheck) and isinstance(y, KeywordsCheck):
                    rx = re.compile(x.pattern, x.compiled_flags())
                    out += [f"keyword {q!r} (matched by regex {x.pattern!r})"
                            for q in y.phrases if rx.search(q)]
            if isinstance(ca, RegexCheck) and isinstance(cb, RegexCheck) \
                    and (ca.pattern, ca.flags) == (cb.pattern, cb.flags):
                out.append(f"regex {ca.pattern!r}")
            if isinstance(ca, PiiCheck) and isinstance(cb, PiiCheck):
                out += [f"pii detector {d!r}" for d in ca.detectors if d in cb.detectors]
            if isinstance(ca, LengthCheck) and isinstance(cb, LengthCheck) and (
                    (ca.max_chars and cb.max_chars) or (ca.min_chars and cb.min_chars)):
                out.append("length bound")
            if isinstance(ca, RefusalCheck) and isinstance(cb, RefusalCheck):
                out.append("refusal")
    return list(dict.fromkeys(out))


def pairwise_lint(constitution: Constitution) -> list[str]:
    """The lint as it was: every pair of principles, a regex compiled per pair (no cap)."""
    out: list[str] = []
    ps = constitution.principles
    for i, a in enumerate(ps):
        for b in ps[i + 1:]:
            if a.scope != b.scope:
                continue
            both = _overlaps(a, b)
            if not both:
                continue
            what = ", ".join(both[:3]) + (f" and {len(both) - 3} more" if len(both) > 3 else "")
            acts = {a.intervention, b.intervention}
            if acts & {"flag"} and acts & {"block", "revise", "regenerate", "escalate"}:
                out.append(f"principles {a.id!r} ({a.intervention}) and {b.id!r} "
                           f"({b.intervention}) match the same content ({what}) but demand "
                           "contradictory interventions")
            elif a.severity != b.severity:
                out.append(f"principles {a.id!r} ({a.severity}) and {b.id!r} ({b.severity}) "
                           f"match the same content ({what}) with different severities")
    return out


def best_of(fn: Callable[[A], R], arg: A, repeat: int) -> tuple[float, R]:
    """The best time of ``repeat`` runs of ``fn(arg)``, and its result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        regex.purge()  # every run compiles its regexes (the cache would flatter small sizes)
        re.purge()
        start = time.perf_counter()
        result = fn(arg)
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    ap.add_argument("--repeat", type=int, default=3, help="Best of this many runs.")
    ap.add_argument("--no-pairwise", action="store_true", help="Skip the old approach.")
    args = ap.parse_args()
    times: dict[int, tuple[float, float | None]] = {}
    print(f"{'principles':>10} {'load':>9} {'warnings':>8} {'indexed lint':>13} "
          f"{'pairwise lint':>14}")
    for n in args.sizes:
        t_load, c = best_of(parse_constitution, synthetic_data(n), args.repeat)
        t_new, new = best_of(lint, c, args.repeat)
        t_old: float | None = None
        if not args.no_pairwise:
            t_old, old = best_of(pairwise_lint, c, 1)
            assert new == old, "the indexed lint disagrees with the pairwise one"
        times[n] = (t_new, t_old)
        shown = f"{t_old * 1000:12.0f} ms" if t_old is not None else f"{'-':>14}"
        print(f"{n:>10} {t_load * 1000:6.0f} ms {len(new):>8} {t_new * 1000:10.1f} ms {shown}")
    if 1000 in times and 2000 in times:
        (n1, o1), (n2, o2) = times[1000], times[2000]
        ratio_old = f", pairwise {o2 / o1:.2f}" if o1 and o2 else ""
        print(f"ratio 2000/1000: indexed {n2 / n1:.2f}{ratio_old}")


if __name__ == "__main__":
    main()
