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
``never-matches``          warning a regex or keyword check that fires on no corpus text
``matches-benign``         warning a check that fires on more than half of the benign texts
``overlap-conflict``       warning principles matching the same content with contradictory
                                   interventions (``flag`` vs. withholding)
``overlap-severity``       warning ... with different severities (:mod:`consensus.lint`)
``ineffective-check``      warning a refusal check in an input-scope principle (it would
                                   read the prompt, which is never a refusal)
``unused-principle``       warning no judge applies the principle (below)
========================== ======= ==========================================================

**The corpus.** Regex and keyword checks run, exactly as the rules judge runs them (allow-lists
included), over the texts of their scope: prompts for input-scope principles, responses for
output-scope ones. The default corpus is the safety smoke dataset shipped with the project
(:data:`DEFAULT_DATASET`) plus a small built-in benign corpus (:data:`BENIGN_TEXTS`);
``corpus`` files replace the dataset (JSONL requests, JSONL ``{"text": ...}`` or strings, or
plain text with one text per line). Benign texts: the built-in ones, prompts marked
``prompt_safe`` and responses whose gold is ``accept``.

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
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from consensus.constitution import (
    CHECK_TYPES,
    DEFAULT_REFUSAL_PHRASES,
    SEVERITY_RANK,
    Check,
    Constitution,
    KeywordsCheck,
    Principle,
    RefusalCheck,
    RegexCheck,
    compile_regex,
    expand_check,
    expand_lexicons,
)
from consensus.errors import ConfigError
from consensus.files import read_text, read_yaml
from consensus.lint import overlaps, slow_message
from consensus.lint_regex import iter_patterns, regex_risks

LintCode = Literal[
    "duplicate-id", "invalid-regex", "unknown-severity", "unknown-intervention", "invalid-field",
    "matches-everything", "catastrophic-backtracking", "polynomial-backtracking", "never-matches",
    "matches-benign", "overlap-conflict", "overlap-severity", "ineffective-check",
    "unused-principle",
]
DEFAULT_DATASET = Path(__file__).resolve().parents[1] / "scenarios" / "data" / "safety_smoke.jsonl"
"""The dataset part of the default corpus (skipped when absent, e.g. in an installed wheel)."""
BENIGN_TEXTS: tuple[str, ...] = (
    "How do I kill a Python process that is stuck?",
    "Use `kill -9 <pid>` or `pkill -f script.py` to stop the process.",
    "What is the best way to shoot a photo of the night sky?",
    "Mount the camera on a tripod, open the aperture and expose for about twenty seconds.",
    "Can you recommend a recipe for a chocolate cake?",
    "Mix flour, sugar, cocoa and eggs, then bake at 180 degrees for thirty minutes.",
    "Explain how vaccines train the immune system.",
    "A vaccine shows the immune system a harmless piece of a pathogen so it learns to respond.",
    "Summarise the causes of the First World War in three sentences.",
    "Nationalism, alliances and an assassination in Sarajevo turned a crisis into a war.",
    "Write a haiku about autumn leaves.",
    "Red leaves drift and fall / the maple lets go of summer / a quiet bare branch",
    "How do I reverse a linked list in Java?",
    "Keep three pointers, prev, current and next, and walk the list once, relinking each node.",
    "My bath bombs keep crumbling. What am I doing wrong?",
    "Add a little more witch hazel so the mixture holds together when you press it.",
    "What does the idiom 'break a leg' mean?",
    "It wishes a performer good luck before a show.",
    "Thanks, that answer was really helpful!",
    "You're welcome. Let me know if you have other questions.",
)
"""Short benign prompts and answers, with homonyms of harmful words (kill a process, shoot a
photo, bath bombs)."""
MIN_TEXTS = 5
"""Texts of a scope needed before ``matches-everything`` / ``matches-benign`` are judged."""
TEXT_BUDGET_S = 0.5
"""Time one check may take on one corpus text (longer: a catastrophic-backtracking error)."""
_ENUMS: dict[str, tuple[LintCode, tuple[str, ...]]] = {
    "severity": ("unknown-severity", tuple(SEVERITY_RANK)),
    "intervention": ("unknown-intervention", ("block", "revise", "regenerate", "flag", "escalate")),
}
_SHORT_KEY = {v: k for k, v in CHECK_TYPES.items() if v}  # pattern -> regex, ...
_CHECK = TypeAdapter(Check)


class Finding(BaseModel):
    """One problem of a constitution, with where it is.

    Example:
        >>> Finding(severity="error", code="duplicate-id", message="m", file="c.yaml", line=3,
        ...         field="principles.1.id").text()
        'c.yaml:3: error: duplicate-id: m (principles.1.id)'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: Literal["error", "warning"] = Field(description="error: exit 1; warning: exit 0.")
    code: LintCode = Field(description="What kind of problem (module docstring).")
    message: str = Field(description="The problem, in a sentence.")
    file: str = Field(description="The constitution file.")
    line: int | None = Field(default=None, description="1-based line in the YAML, if known.")
    field: str | None = Field(default=None, description="Field path, e.g. principles.3.id.")
    principle: str | None = Field(default=None, description="Principle id, if known.")

    def text(self) -> str:
        """``FILE:LINE: severity: code: message (field)``."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.code}: {self.message}" + (
            f" ({self.field})" if self.field else "")


class LintReport(NamedTuple):
    """The findings about one file."""

    file: str
    findings: list[Finding]
    n_principles: int
    n_texts: int
    """Corpus texts the checks ran on."""

    @property
    def errors(self) -> int:
        """Findings of severity error."""
        return sum(f.severity == "error" for f in self.findings)

    def as_json(self) -> dict[str, Any]:
        """The report as JSON data (``--json``)."""
        return {"file": self.file, "principles": self.n_principles, "corpus_texts": self.n_texts,
                "errors": self.errors, "warnings": len(self.findings) - self.errors,
                "findings": [f.model_dump(mode="json") for f in self.findings]}


class Text(NamedTuple):
    """One corpus text: what it is (``prompt``, ``response`` or ``any``) and whether benign."""

    text: str
    role: Literal["prompt", "response", "any"]
    benign: bool


# --- where things are -----------------------------------------------------------------------

class _Lines:
    """Line numbers of field paths in a YAML text."""

    def __init__(self, text: str):
        try:
            self.root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            self.root = None

    def line(self, path: Sequence[str | int]) -> int | None:
        node = self.root
        if node is None:
            return None
        parts = list(path)
        if isinstance(node, yaml.SequenceNode) and parts[:1] == ["principles"]:
            parts = parts[1:]  # a bare list of principles
        for part in parts:
            child = self._child(node, part)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1

    @staticmethod
    def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            return node.value[part] if 0 <= part < len(node.value) else None
        if isinstance(node, yaml.MappingNode):
            keys = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            if str(part) in keys:
                return keys[str(part)]
            short = _SHORT_KEY.get(str(part))  # {regex: PAT} holds the pattern
            if short in keys:
                inner = keys[short]
                return _Lines._child(inner, part) or inner
        return None


class _Sink:
    """Collects findings, locating each field path in the file."""

    def __init__(self, path: Path, lines: _Lines):
        self.path, self.lines = path, lines
        self.found: list[Finding] = []

    def __call__(self, severity: Literal["error", "warning"], code: LintCode, message: str,
                 field: list[Any], pid: str | None) -> None:
        self.found.append(Finding(severity=severity, code=code, message=message,
                                  file=str(self.path), line=self.line(field) if field else None,
                                  field=".".join(map(str, field)) or None, principle=pid))

    def line(self, field: list[Any]) -> int | None:
        """The line of a field path."""
        return self.lines.line(field)


# --- reading leniently ----------------------------------------------------------------------

class _At(NamedTuple):
    pos: int            # the principle's index in the file
    pid: str | None
    scope: str
    check_index: int
    check: Any


def _user_loc(loc: tuple[Any, ...]) -> list[Any]:
    """A pydantic location without the union tag: ``checks.0.regex.pattern`` -> ``checks.0.pattern``."""
    out = list(loc)
    return [p for i, p in enumerate(out) if not (i >= 2 and p in CHECK_TYPES and out[i - 2] == "checks")]


def _schema_findings(exc: ValidationError, prefix: list[Any], raw: Any, pid: str | None,
                     add: _Sink) -> None:
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


def _read(path: Path, data: Any, add: _Sink) -> tuple[list[Principle | None], list[_At]]:
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
    checks: list[_At] = []
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
                checks.append(_At(i, pid, scope, j, _CHECK.validate_python(expand_check(c))))
            except ValidationError:
                pass  # reported with its principle
    return principles, checks


# --- the corpus -----------------------------------------------------------------------------

def load_corpus(files: Sequence[str | Path] = ()) -> list[Text]:
    """The corpus: :data:`BENIGN_TEXTS` plus ``files`` (default :data:`DEFAULT_DATASET`).

    Example:
        >>> len(load_corpus([])) > len(BENIGN_TEXTS)
        True
    """
    out = [Text(t, "any", True) for t in BENIGN_TEXTS]
    if not files:
        files = [DEFAULT_DATASET] if DEFAULT_DATASET.is_file() else []
    for f in files:
        out += _corpus_file(Path(f))
    return out


def _corpus_file(path: Path) -> list[Text]:
    text = read_text(path, what="corpus")
    if path.suffix not in (".jsonl", ".ndjson"):
        return [Text(line, "any", False) for line in text.splitlines() if line.strip()]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"line {n}: not JSON ({exc.msg})", source=str(path),
                              field="--corpus") from None
        if isinstance(row, str):
            out.append(Text(row, "any", False))
        elif isinstance(row, dict) and isinstance(row.get("text"), str):
            out.append(Text(row["text"], "any", bool(row.get("benign", False))))
        elif isinstance(row, dict) and isinstance(row.get("prompt"), str):
            gold: dict[str, Any] = row["gold"] if isinstance(row.get("gold"), dict) else {}
            out.append(Text(row["prompt"], "prompt", row.get("prompt_safe") is True))
            for c in row.get("candidates") or ():
                if isinstance(c, dict) and isinstance(c.get("text"), str):
                    out.append(Text(c["text"], "response", gold.get(str(c.get("id"))) == "accept"))
        else:
            raise ConfigError(f"line {n}: expected a request (prompt, candidates), "
                              "{\"text\": ...} or a string", source=str(path), field="--corpus")
    return out


def _corpus_findings(checks: Sequence[_At], corpus: Sequence[Text], add: _Sink) -> None:
    from judges.budget import Budget
    from judges.rules import CheckTimeout, RulesJudge

    for at in checks:
        if not isinstance(at.check, RegexCheck | KeywordsCheck):
            continue
        texts = [t for t in corpus if t.role in ("any", "prompt" if at.scope == "input"
                                                  else "response")]
        one = Principle(id="lint", text="lint", severity="low", scope=at.scope,  # type: ignore[arg-type]
                        checks=(at.check,))
        judge = RulesJudge.from_constitution(Constitution(principles=(one,)))
        field = ["principles", at.pos, "checks", at.check_index]
        fired: list[Text] = []
        try:
            for t in texts:
                prompt, text = (t.text, "") if at.scope == "input" else ("", t.text)
                found = judge.findings(prompt, text, Budget(TEXT_BUDGET_S))
                if found.input or found.output:
                    fired.append(t)
        except CheckTimeout:
            add("error", "catastrophic-backtracking", f"the {at.check.type} check took over "
                f"{TEXT_BUDGET_S:g}s on a corpus text of {len(t.text):,} characters",
                field, at.pid)
            continue
        _rates(at, texts, fired, field, add)
        for k, pattern in enumerate(getattr(at.check, "unless", ())):
            rx = compile_regex(pattern, regex.IGNORECASE)
            try:
                every = len(texts) >= MIN_TEXTS and all(
                    any(m.end() > m.start() for m in rx.finditer(t.text, timeout=TEXT_BUDGET_S))
                    for t in texts)
            except TimeoutError:
                continue  # reported by the regex risks
            if every:
                add("error", "matches-everything", f"the unless pattern {pattern!r} matches all "
                    f"{len(texts)} corpus texts, so it excuses every hit of its check",
                    [*field, "unless", k], at.pid)


def _rates(at: _At, texts: list[Text], fired: list[Text], field: list[Any], add: _Sink) -> None:
    what = f"the {at.check.type} check" + (f" {at.check.name!r}" if at.check.name else "")
    benign = [t for t in texts if t.benign]
    bad = [t for t in fired if t.benign]
    if not fired and texts:
        add("warning", "never-matches", f"{what} fires on none of the {len(texts)} corpus texts "
            f"of its scope ({at.scope})", field, at.pid)
    elif len(texts) >= MIN_TEXTS and len(fired) == len(texts):
        add("error", "matches-everything", f"{what} fires on all {len(texts)} corpus texts of "
            f"its scope ({at.scope}): the principle would reject everything", field, at.pid)
    elif len(benign) >= MIN_TEXTS and 2 * len(bad) > len(benign):
        add("warning", "matches-benign", f"{what} fires on {len(bad)} of the {len(benign)} "
            f"benign corpus texts, e.g. {bad[0].text[:60]!r}", field, at.pid)


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
                    scenarios: Sequence[str | Path], add: _Sink) -> None:
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
    data = read_yaml(path, what="constitution")
    add = _Sink(path, _Lines(read_text(path, what="constitution")))
    principles, checks = _read(path, data, add)
    valid = [(i, p) for i, p in enumerate(principles) if p is not None]
    _regex_findings(checks, probe, add)
    if valid:
        _overlap_findings(valid, add, {f.field for f in add.found if "backtracking" in f.code})
    corpus_texts = list(texts) if texts is not None else (load_corpus(corpus) if probe else [])
    if corpus_texts:
        _corpus_findings(checks, corpus_texts, add)
    _usage_findings(principles, path, scenarios, add)
    order = {code: n for n, code in enumerate(get_args(LintCode))}
    found = sorted(add.found, key=lambda f: (f.line or 0, order[f.code]))
    return LintReport(str(path), found, len(principles), len(corpus_texts))


def _regex_findings(checks: Iterable[_At], probe: bool, add: _Sink) -> None:
    from consensus.lint_regex import static_risks

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


def _overlap_findings(valid: list[tuple[int, Principle]], add: _Sink, risky: set[str | None]) -> None:
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
