"""The HTTP service: Ray Serve with a FastAPI ingress (``consensus serve``).

:mod:`.config` reads the service (panels, upstream, limits, access), :mod:`.auth` the bearer
tokens, :mod:`.runtime` is what a replica holds (coordinators, the store writer), :mod:`.app`
the routes, :mod:`.proxy` the OpenAI-compatible guardrail proxy, :mod:`.metrics` the Prometheus
hub, :mod:`.serve` starts it all. Needs the ``serve`` extra (``pip install
'consensus-panel[serve]'``).
"""
