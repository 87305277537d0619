"""Reading the files a user names: one place that turns every way a file can be wrong into a
:class:`~consensus.errors.ConfigError` naming the file.

Scenarios, datasets, constitutions and record CSVs are all read through :func:`read_text`, so
each of them gets the same answers: not found, a directory where a file is expected, unreadable
(permissions), not UTF-8 text (Latin-1, UTF-16, binary), with the byte and line where decoding
failed. A UTF-8 byte-order mark (spreadsheets write one) is dropped; line endings are the
readers' business (``splitlines`` and the csv module accept CRLF).

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "latin1.yaml"
    >>> _ = p.write_bytes("name: caf\\xe9\\n".encode("latin-1"))
    >>> try:
    ...     read_text(p, what="scenario")
    ... except ConfigError as e:
    ...     print(e.message)
    not UTF-8 text (byte 0xe9 at line 1, column 10); save the scenario as UTF-8
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from consensus.errors import ConfigError

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_text(path: str | Path, *, what: str = "file") -> str:
    """The text of a UTF-8 file, or a ConfigError that names the file and the problem."""
    p = Path(path)
    src = str(p)
    if not p.exists():
        raise ConfigError(f"{what} not found", source=src)
    if p.is_dir():
        raise ConfigError(f"{what} expected, but this is a directory", source=src)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror or exc}", source=src) from None
    return decode_text(raw, source=src, what=what)


def decode_text(raw: bytes, *, source: str, what: str = "file") -> str:
    """Decode UTF-8 (an optional byte-order mark dropped); anything else is a ConfigError."""
    if raw.startswith(_UTF16_BOMS) or raw[:2].count(0) == 1:
        raise ConfigError(f"the {what} is UTF-16 text; save it as UTF-8", source=source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        head = raw[: exc.start]
        line = head.count(b"\n") + 1
        column = exc.start - (head.rfind(b"\n") + 1) + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}, "
                          f"column {column}); save the {what} as UTF-8", source=source) from None
    if "\x00" in text:
        raise ConfigError(f"the {what} holds NUL bytes: a binary file, not text", source=source)
    return text


def read_yaml(path: str | Path, *, what: str = "file") -> Any:
    """Parse a YAML file; syntax errors name the file, the line and the column."""
    text = read_text(path, what=what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}invalid YAML: {problem}", source=str(path)) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", source=str(path)) from None


def output_dir(path: str | Path, *, option: str = "--out") -> Path:
    """Create (if needed) a folder to write results into, or raise a ConfigError saying why
    it cannot be: a file in the way, no permission, a read-only disk."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError("the output folder is a file", source=str(p), field=option)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write the output folder: {exc.strerror or exc}",
                          source=str(p), field=option) from None
    return p
