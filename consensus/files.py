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

import stat
from pathlib import Path
from typing import Any

import yaml

from consensus.errors import ConfigError

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
MAX_FILE_BYTES = 4 * 2**30
"""The largest file read (a dataset of millions of requests fits; /dev/zero does not)."""
MAX_YAML_VALUES = 1_000_000
"""The most values a YAML document may expand to."""


def read_text(path: str | Path, *, what: str = "file") -> str:
    """The text of a UTF-8 file, or a ConfigError that names the file and the problem."""
    p = Path(path)
    src = str(p)
    if not p.exists():
        raise ConfigError(f"{what} not found", source=src)
    if p.is_dir():
        raise ConfigError(f"{what} expected, but this is a directory", source=src)
    try:
        info = p.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror or exc}", source=src) from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        raise ConfigError(f"the {what} is not a regular file", source=src)
    if info.st_size > MAX_FILE_BYTES:
        raise ConfigError(f"the {what} is {info.st_size / 2**30:.1f} GiB; files above "
                          f"{MAX_FILE_BYTES / 2**30:g} GiB are not read", source=src)
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


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (YAML says a key appears once; PyYAML
    would keep the last one silently, so a reviewer reads one value and the run uses another)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, *, what: str = "file") -> Any:
    """Parse a YAML file; syntax errors name the file, the line and the column.

    Duplicate keys are errors, and so is a document that expands (through aliases) to more
    than :data:`MAX_YAML_VALUES` values: a few lines of anchors can otherwise stand for
    billions of values.
    """
    text = read_text(path, what=what)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}invalid YAML: {problem}", source=str(path)) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", source=str(path)) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"invalid YAML value: {exc}", source=str(path)) from None
    if _too_many_values(data, MAX_YAML_VALUES):
        raise ConfigError(f"the document expands to more than {MAX_YAML_VALUES:,} values "
                          "(YAML aliases?)", source=str(path))
    return data


def _too_many_values(data: Any, limit: int) -> bool:
    """Whether walking ``data`` (shared references counted each time) meets over ``limit``
    values; stops as soon as it does."""
    stack, seen = [data], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return False


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
