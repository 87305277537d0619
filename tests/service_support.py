"""Helpers of the service tests: a free port, a service started for a module, YAML files."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def llm_panel_scenario(folder: Path, base_url: str, *, name: str = "llm5", judges: int = 5,
                       model: str = "valid", timeout_s: float = 10.0,
                       hosts: bool = False, judge: dict[str, Any] | None = None,
                       **extra: Any) -> Path:
    """A scenario of ``judges`` LLM judges on the loopback server (its dataset: one request);
    ``judge`` adds fields to every judge spec, ``extra`` to the scenario."""
    data = folder / f"{name}.jsonl"
    data.write_text('{"id": "r1", "prompt": "p", "candidates": [{"id": "a", "text": "t"}]}\n')
    panel = [{"name": f"j{i}", "kind": "llm", "model": f"openai/{model}",
              "api_base": base_url, "timeout_s": timeout_s, "retries": 0,
              "endpoint_max_in_flight": 1000,
              **({"host": f"h{i}"} if hosts else {}), **(judge or {})} for i in range(judges)]
    doc = {"name": name, "dataset": data.name, "panel": panel,
           "strategy": "majority", **extra}
    return write_yaml(folder / f"{name}.yaml", doc)


@contextmanager
def running_service(files: list[str | Path], *, store: str, tokens: Any = None,
                    host: str = "127.0.0.1", name: str = "consensus") -> Iterator[Any]:
    """``consensus serve FILES`` on a free loopback port (Ray must be initialised)."""
    from consensus.service.config import load_service
    from consensus.service.serve import start_service

    config = load_service(files, store=store)
    svc = start_service(config, host=host, port=free_port(), tokens=tokens, name=name)
    try:
        yield svc
    finally:
        svc.stop()
