"""Constitution versions and hot reload.

Every decision records the version of the constitution(s) it was made under
(:func:`constitution_version`, a short content hash). A running coordinator picks up a changed
constitution file without a restart (:class:`ConstitutionWatcher`).

Example:
    >>> from consensus.constitution import parse_constitution
    >>> c = parse_constitution([{"id": "p", "text": "t", "severity": "low"}])
    >>> len(constitution_version([c]))
    12
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from consensus.constitution import Constitution


def constitution_version(constitutions: Sequence[Constitution]) -> str | None:
    """A short hash of the constitutions' content (None for none)."""
    if not constitutions:
        return None
    blob = json.dumps([c.model_dump(mode="json") for c in constitutions], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
