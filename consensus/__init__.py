"""consensus: panels of independent judges on Ray, aggregation strategies, agreement statistics.

The public entry points are :mod:`consensus.types` (the domain language),
:mod:`consensus.coordinator` (fan-out, quorum, strategy, intervention) and the ``consensus`` CLI.
Importing this package has no side effects: no network, no environment reads, no Ray start.
"""

__version__ = "0.1.0"
