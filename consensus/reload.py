"""Constitution versions and hot reload.

Every decision records the version of the constitution(s) it was made under
(:func:`constitution_version`, a short hash of their content). A running coordinator picks up a
changed constitution file without a restart:

* :class:`ConstitutionWatcher` notices a changed file (its modification time, size or inode:
  editors that save by renaming give a new inode) and loads it strictly. A file that no longer
  loads is refused: the error is logged and kept in ``errors``, and the old constitution stays
  in force (a broken edit never disarms a running panel).
* :meth:`consensus.coordinator.Coordinator.reload` then builds the changed judges on their hosts
  under the new version, beside the old ones, and switches only when every host has them: a
  request names the version it started with on every host, so no decision mixes two
  constitutions, and requests in flight finish under the old one.

Example:
    >>> from consensus.constitution import parse_constitution
    >>> c = parse_constitution([{"id": "p", "text": "t", "severity": "low"}])
    >>> len(constitution_version([c]))
    12
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from consensus.constitution import Constitution, load_constitution
from consensus.errors import ConfigError
from judges.base import config_hash

log = structlog.get_logger("consensus.reload")

RELOAD_INTERVAL_S = 1.0
"""How often a running coordinator looks at its constitution files."""


def constitution_version(constitutions: Sequence[Constitution]) -> str | None:
    """A short hash of the constitutions' content (None for none)."""
    if not constitutions:
        return None
    return config_hash([c.model_dump(mode="json") for c in constitutions])


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConstitutionWatcher:
    """The constitution files of a panel, and what each holds now.

    Args:
        files: Judge name -> the constitution file it reads.
        current: File -> the constitution loaded from it at start.
    """

    def __init__(self, files: Mapping[str, Path], current: Mapping[Path, Constitution]):
        self.files = dict(files)
        self.current = dict(current)
        self._stamps = {f: _stamp(f) for f in set(self.files.values())}
        self.errors: list[str] = []
        self.reloads = 0

    def constitutions(self) -> list[Constitution]:
        """The constitutions in force, in a stable order (by file)."""
        return [self.current[f] for f in sorted(self.current)]

    def version(self) -> str | None:
        """:func:`constitution_version` of the constitutions in force."""
        return constitution_version(self.constitutions())

    def poll(self) -> dict[Path, Constitution]:
        """The files that changed since the last poll and loaded cleanly, with their new
        constitutions (now in force here); empty when nothing changed."""
        changed: dict[Path, Constitution] = {}
        for path, old in list(self._stamps.items()):
            stamp = _stamp(path)
            if stamp == old:
                continue
            self._stamps[path] = stamp
            try:
                new = load_constitution(path)
            except ConfigError as exc:
                msg = f"constitution {path} not reloaded (the old one stays in force): {exc}"
                self.errors.append(msg)
                log.error("constitution_reload_refused", file=str(path), error=str(exc))
                continue
            if new != self.current.get(path):
                changed[path] = new
        if changed:
            self.current.update(changed)
            self.reloads += 1
        return changed
