"""``consensus constitution lint``: every problem of a constitution file, each with its location.

Unlike loading (:func:`consensus.constitution.load_constitution`), which stops at the first
error, the lint reads the file leniently and reports all it finds, each as a :class:`Finding`
with the file, the line in the YAML, the field path (``principles.3.checks.0.pattern``) and the
principle id:

========================== ======= ==========================================================
code                       level   what
========================== ======= ==========================================================
``duplicate-id``           error   a principle id used before (the later one is ignored)
``invalid-regex``          error   a pattern the rules judge's engine cannot compile
``unknown-severity``       error   a severity other than low, medium, high, critical
``unknown-intervention``   error   an intervention other than block, revise, regenerate, ...
``invalid-field``          error   any other schema error (unknown key, missing text, ...)
``matches-everything``     error   a check that fires on every corpus text of its scope, or an
                                   ``unless`` pattern that excuses every text
``catastrophic-backtracking`` e/w  see :mod:`consensus.lint_regex` (error when measured)
``polynomial-backtracking`` warning see :mod:`consensus.lint_regex`
``never-matches``          warning a regex, keyword or judge-manipulation check that fires on
                                   no corpus text
``matches-benign``         warning a check that fires on more than half of the benign texts
``overlap-conflict``       warning principles matching the same content with contradictory
                                   interventions (``flag`` vs. withholding)
``overlap-severity``       warning ... with different severities (:mod:`consensus.lint`)
``ineffective-check``      warning a refusal check in an input-scope principle (it would
                                   read the prompt, which is never a refusal)
``unused-principle``       warning no judge applies the principle (below)
========================== ======= ==========================================================

**The corpus.** Regex, keyword and judge-manipulation checks also run, exactly as the rules
judge runs them, over a corpus of prompts and responses (:mod:`consensus.lint_corpus`): by
default the safety smoke dataset plus a small built-in benign corpus; ``corpus`` files replace
the dataset.

**Unused principles.** With ``scenarios``, a principle is unused when no judge of them applies
it: no LLM judge reads this constitution, and no rules judge does or the principle has no check
the rules judge runs (a refusal check in an input-scope principle does not count). Without
scenarios, a principle without such checks is reported: only an LLM judge can apply it.

A file that cannot be read as a constitution at all (not found, not UTF-8, bad YAML, no
``principles`` list) is a :class:`~consensus.errors.ConfigError`, as for loading.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
    >>> _ = p.write_text("principles:\\n  - {id: a, text: t, severity: high, checks: [{regex: '(x'}]}\\n"
    ...                  "  - {id: a, text: t, severity: severe}\\n")
    >>> [(f.line, f.code) for f in lint_file(p, probe=False).findings if f.severity == "error"]
    [(2, 'invalid-regex'), (3, 'duplicate-id'), (3, 'unknown-severity')]
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import TypeAdapter, ValidationError

from consensus.constitution import (
    SEVERITY_RANK,
    Check,
    Constitution,
    Principle,
    RefusalCheck,
)
from consensus.constitution_checks import CHECK_TYPES, DEFAULT_REFUSAL_PHRASES, expand_check
from consensus.constitution_lexicon import expand_lexicons
from consensus.errors import ConfigError
from consensus.files import read_text, read_yaml
from consensus.lint import overlaps, slow_message
from consensus.lint_corpus import Text, corpus_findings, load_corpus
from consensus.lint_findings import CheckAt, Finding, Lines, LintCode, LintReport, Sink
from consensus.lint_regex import iter_patterns, regex_risks, static_risks

REGEX_CODES: frozenset[LintCode] = frozenset(
    {"invalid-regex", "catastrophic-backtracking", "polynomial-backtracking"})
"""The findings :func:`lint_regexes` keeps."""
_ENUMS: dict[str, tuple[LintCode, tuple[str, ...]]] = {
    "severity": ("unknown-severity", tuple(SEVERITY_RANK)),
    "intervention": ("unknown-intervention", ("block", "revise", "regenerate", "flag", "escalate")),
}
_CHECK = TypeAdapter(Check)


# --- reading leniently ----------------------------------------------------------------------

def _user_loc(loc: tuple[Any, ...]) -> list[Any]:
    """A pydantic location without the union tag: ``checks.0.regex.pattern`` -> ``checks.0.pattern``."""
    out = list(loc)
    return [p for i, p in enumerate(out) if not (i >= 2 and p in CHECK_TYPES and out[i - 2] == "checks")]


def _schema_findings(exc: ValidationError, prefix: list[Any], raw: Any, pid: str | None,
                     add: Sink) -> None:
    errors = exc.errors()
    errors = [e for e in errors if not any(
        len(o["loc"]) > len(e["loc"]) and o["loc"][:len(e["loc"])] == e["loc"] for o in errors)]
    for err in errors:
        loc = _user_loc(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        value = err.get("input")
        shown = repr(value)[:120] if not isinstance(value, dict) else "a mapping"
        code: LintCode = "invalid-field"
        if len(loc) == 1 and loc[0] in _ENUMS and err["type"] == "literal_error":
            code, allowed = _ENUMS[str(loc[0])]
            near = difflib.get_close_matches(str(value).lower(), allowed, n=1, cutoff=0.5)
            msg = (f"unknown {loc[0]} {value!r}; one of {', '.join(allowed)}"
                   + (f" (did you mean {near[0]!r}?)" if near else ""))
        elif "invalid regular expression" in msg:
            code = "invalid-regex"
            msg = f"pattern {value!r} does not compile on the rules judge's engine: {msg}"
        elif err["type"] == "missing":
            msg = f"{msg}: {loc[-1]!s}"
        else:
            msg = f"{msg}; got {shown}"
        add("error", code, msg, [*prefix, *loc], pid)


def _read(path: Path, data: Any, add: Sink) -> tuple[list[Principle | None], list[CheckAt]]:
    """Every principle that validates (None for the others) and every check that does."""
    if isinstance(data, list):
        data = {"principles": data}
    if not isinstance(data, dict) or not isinstance(data.get("principles"), list) \
            or not data["principles"]:
        raise ConfigError("a constitution is a list of principles, or a mapping with a "
                          "non-empty 'principles' list", source=str(path))
    try:
        data = expand_lexicons(data, source=str(path))  # {{name}} in patterns
    except ConfigError as exc:
        add("error", "invalid-field", exc.message, (exc.field or "").split(".") if exc.field
            else [], None)
    probe = {"id": "x", "text": "t", "severity": "low"}
    try:
        Constitution.model_validate({**data, "principles": [probe]})
    except ValidationError as exc:
        _schema_findings(exc, [], data, None, add)
    principles: list[Principle | None] = []
    checks: list[CheckAt] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["principles"]):
        pid = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        if not isinstance(raw, dict):
            add("error", "invalid-field", f"a principle is a mapping; got {raw!r}"[:160],
                ["principles", i], None)
            principles.append(None)
            continue
        if pid is not None and pid in seen:
            add("error", "duplicate-id", f"duplicate principle id {pid!r} (first at "
                f"principles.{seen[pid]}, line {add.line(['principles', seen[pid]])}); this "
                "principle is ignored by the other checks", ["principles", i, "id"], pid)
        try:
            p: Principle | None = Principle.model_validate(raw)
        except ValidationError as exc:
            _schema_findings(exc, ["principles", i], raw, pid, add)
            p = None
        duplicate = pid is not None and pid in seen
        seen.setdefault(pid or f"#{i}", i)
        principles.append(None if duplicate else p)
        scope = "input" if raw.get("scope") == "input" else "output"
        raw_checks = raw.get("checks", ())
        raw_checks = [raw_checks] if isinstance(raw_checks, dict | str) else raw_checks
        for j, c in enumerate(raw_checks if isinstance(raw_checks, list) else ()):
            try:
                checks.append(CheckAt(i, pid, scope, j, _CHECK.validate_python(expand_check(c))))
            except ValidationError:
                pass  # reported with its principle
    return principles, checks


# --- principles no judge uses ---------------------------------------------------------------

def readers(path: Path, scenarios: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """(rules judges, LLM judges) of ``scenarios`` that read the constitution at ``path``
    (read from the scenarios' panels as written, so a broken constitution does not stop it).

    Example:
        >>> readers(Path("c.yaml"), [])
        ([], [])
    """
    rules: list[str] = []
    llm: list[str] = []
    target = path.resolve()
    for s in scenarios:
        doc = read_yaml(s, what="scenario")
        panel = doc.get("panel") if isinstance(doc, dict) else None
        if not isinstance(panel, list):
            raise ConfigError("a scenario has a 'panel' list", source=str(s), field="panel")
        for entry in panel:
            if not isinstance(entry, dict) or not isinstance(entry.get("constitution"), str):
                continue
            c = Path(entry["constitution"])
            if (c if c.is_absolute() else Path(s).parent / c).resolve() != target:
                continue
            name = f"{Path(s).name}:{entry.get('name')}"
            if entry.get("kind") == "rules":
                rules.append(name)
            elif entry.get("kind") == "llm":
                llm.append(name)
    return rules, llm


def _usage_findings(principles: Sequence[Principle | None], path: Path,
                    scenarios: Sequence[str | Path], add: Sink) -> None:
    rules, llm = readers(path, scenarios) if scenarios else ([], [])
    names = ", ".join(Path(s).name for s in scenarios)
    if scenarios and not rules and not llm:
        add("warning", "unused-principle", f"no judge of {names} reads this constitution, so "
            "none of its principles is applied", [], None)
        return
    for i, p in enumerate(principles):
        if p is None:
            continue
        effective = []
        for j, c in enumerate(p.checks):
            if isinstance(c, RefusalCheck) and p.scope == "input":
                add("warning", "ineffective-check", "a refusal check in an input-scope principle "
                    "reads the prompt, which is never a refusal; put it in an output-scope "
                    "principle", ["principles", i, "checks", j], p.id)
            else:
                effective.append(c)
        if not scenarios and not effective:
            add("warning", "unused-principle", "no check the rules judge runs: only an LLM judge "
                "given this constitution applies it (lint with --scenario to check that one "
                "does)", ["principles", i], p.id)
        elif scenarios and not llm and not (rules and effective):
            why = "no rules judge reads this constitution" if not rules else \
                "it has no check the rules judge runs"
            add("warning", "unused-principle", f"no judge of {names} applies it: {why}, and no "
                "LLM judge reads this constitution", ["principles", i], p.id)


# --- the lint -------------------------------------------------------------------------------

def lint_file(path: str | Path, *, corpus: Sequence[str | Path] = (),
              scenarios: Sequence[str | Path] = (), probe: bool = True,
              texts: Sequence[Text] | None = None) -> LintReport:
    """Lint one constitution file (module docstring); findings in file order.

    ``probe=False`` skips the timed regex probes and the corpus (static checks only);
    ``texts`` gives the corpus directly instead of ``corpus`` files.
    """
    path = Path(path)
    add, principles, checks = _start(path)
    valid = [(i, p) for i, p in enumerate(principles) if p is not None]
    _regex_findings(checks, probe, add)
    if valid:
        _overlap_findings(valid, add, {f.field for f in add.found if "backtracking" in f.code})
    corpus_texts = list(texts) if texts is not None else (load_corpus(corpus) if probe else [])
    if corpus_texts:
        corpus_findings(checks, corpus_texts, add)
    _usage_findings(principles, path, scenarios, add)
    return LintReport(str(path), _in_order(add.found), len(principles), len(corpus_texts))


def lint_regexes(path: str | Path, *, probe: bool = False) -> list[Finding]:
    """The findings of :func:`lint_file` about each pattern alone (:data:`REGEX_CODES`), in file
    order: no overlap, corpus or usage checks, and static analysis only unless ``probe`` (fast,
    and the same on every machine).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
        >>> _ = p.write_text("principles:\\n  - {id: a, text: t, severity: high}\\n"
        ...                  "  - {id: b, text: t, severity: low, checks: [{regex: '(a+)+$'}]}\\n")
        >>> [(f.line, f.severity, f.code) for f in lint_regexes(p)]
        [(3, 'warning', 'catastrophic-backtracking')]
    """
    path = Path(path)
    add, _, checks = _start(path)
    _regex_findings(checks, probe, add)
    return _in_order([f for f in add.found if f.code in REGEX_CODES])


def _start(path: Path) -> tuple[Sink, list[Principle | None], list[CheckAt]]:
    """Read the file leniently: the sink with the schema findings, the principles, the checks."""
    data = read_yaml(path, what="constitution")
    add = Sink(path, Lines(read_text(path, what="constitution")))
    principles, checks = _read(path, data, add)
    return add, principles, checks


def _in_order(found: list[Finding]) -> list[Finding]:
    order = {code: n for n, code in enumerate(get_args(LintCode))}
    return sorted(found, key=lambda f: (f.line or 0, order[f.code]))


def _regex_findings(checks: Iterable[CheckAt], probe: bool, add: Sink) -> None:
    cache: dict[tuple[str, int], list[Any]] = {}
    for at in checks:
        for field, pattern, flags in iter_patterns(at.check):
            if isinstance(at.check, RefusalCheck) and pattern in DEFAULT_REFUSAL_PHRASES:
                continue  # built in, not the author's
            key = (pattern, flags)
            if key not in cache:
                cache[key] = regex_risks(pattern, flags) if probe else static_risks(pattern, flags)
            for risk in cache[key]:
                add(risk.severity, risk.code, risk.message,
                    ["principles", at.pos, "checks", at.check_index, *field.split(".")], at.pid)


def _overlap_findings(valid: list[tuple[int, Principle]], add: Sink, risky: set[str | None]) -> None:
    result = overlaps(Constitution(principles=tuple(p for _, p in valid)))
    for o in result.found:
        (ia, _), (ib, b) = valid[o.first], valid[o.second]
        add("warning", "overlap-conflict" if o.contradictory else "overlap-severity",
            f"{o.message} (the other is principles.{ia}, line {add.line(['principles', ia])})",
            ["principles", ib], b.id)
    if result.more:
        add("warning", "overlap-severity", f"... and {result.more} more overlapping pairs", [],
            None)
    by_id = {p.id: i for i, p in valid}
    for pattern, owner in result.slow:
        i = by_id[owner]
        if not any(f and f.startswith(f"principles.{i}.") for f in risky):
            add("warning", "polynomial-backtracking", slow_message(pattern, owner),
                ["principles", i], owner)
