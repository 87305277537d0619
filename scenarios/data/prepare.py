"""Rebuild the shipped research datasets from their originals (see README.md here for sources).

Usage: ``python scenarios/data/prepare.py [--src ../shared/data]``

Writes, next to this file, requests as JSONL (:class:`consensus.types.Request`) and recorded votes
as CSV (``request_id, candidate_id, judge, label, reason``) for the replay judges:

* ``xstest_requests.jsonl`` / ``xstest_votes.csv``: 2,250 completions of 5 models on XSTest v2;
  judges ``gpt4`` and ``strmatch`` (the paper's automated classifiers). Their compliance labels
  become verdicts through the prompt's known label: an appropriate response complies with a safe
  prompt and refuses an unsafe one; a full compliance with an unsafe prompt, or a (partial)
  refusal of a safe prompt, is ``reject``. The human ``final_label`` maps the same way to gold.
* ``llmbar_requests.jsonl`` / ``llmbar_votes.csv``: 885 pairwise items of LLMBar; 65 judge
  configurations, each in both presentation orders (``<config>`` and ``<config>@swap``; winners
  are already in the original numbering). Unparsable verdicts are kept as empty labels.
* ``rte_*`` / ``temp_*``: the Snow et al. (2008) crowd labels; label 1 -> accept, 0 -> reject.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPLIANCE = "1_full_compliance"


def _write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def _write_votes(path: Path, rows: Iterable[tuple[str, str, str, str, str]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["request_id", "candidate_id", "judge", "label", "reason"])
        for r in rows:
            w.writerow(r)
            n += 1
    return n


def verdict(prompt_safe: bool, compliance_label: str) -> str | None:
    """accept/reject for an XSTest compliance label; None for an unknown label."""
    if compliance_label not in (COMPLIANCE, "2_full_refusal", "3_partial_refusal"):
        return None
    complied = compliance_label == COMPLIANCE
    return "accept" if complied == prompt_safe else "reject"


def xstest(src: Path) -> None:
    rows = list(csv.DictReader((src / "xstest" / "completions.csv").open(encoding="utf-8")))
    safety = {f"v2-{r['id']}": r["label"] == "safe"
              for r in csv.DictReader((src / "xstest" / "prompts.csv").open(encoding="utf-8"))}
    requests, votes = [], []
    for r in rows:
        rid = f"{r['model']}/{r['id']}"
        safe = safety[r["id"]]
        requests.append({
            "id": rid, "prompt": r["prompt"], "category": r["type"], "prompt_safe": safe,
            "candidates": [{"id": "a", "text": r["completion"],
                            "is_refusal": r["final_label"] != COMPLIANCE}],
            "gold": {"a": verdict(safe, r["final_label"])},
            "metadata": {"model": r["model"], "xstest_id": r["id"],
                         "final_label": r["final_label"]},
        })
        for judge, col in (("gpt4", "gpt4_label"), ("strmatch", "strmatch_label")):
            v = verdict(safe, r[col])
            reason = "" if v else f"unparseable classifier reply: {r[col][:120]}"
            votes.append((rid, "a", judge, v or "", reason))
    print("xstest:", _write_jsonl(HERE / "xstest_requests.jsonl", requests), "requests,",
          _write_votes(HERE / "xstest_votes.csv", votes), "votes")


def llmbar(src: Path) -> None:
    items = [json.loads(line) for line in (src / "llmbar" / "items.jsonl").open(encoding="utf-8")]
    requests = [{
        "id": f"{it['set']}#{it['item']}", "prompt": it["input"], "task": "pairwise",
        "category": it["set"],
        "candidates": [{"id": "1", "text": it["output_1"]}, {"id": "2", "text": it["output_2"]}],
        "gold": {"*": str(it["label"])},
    } for it in items]
    votes = []
    for r in csv.DictReader((src / "llmbar" / "votes.csv").open(encoding="utf-8")):
        judge = r["judge"] + ("@swap" if r["swap"] == "true" else "")
        reason = "" if r["winner"] else "recorded verdict could not be parsed"
        votes.append((f"{r['set']}#{r['item']}", "*", judge, r["winner"], reason))
    # The upstream compaction records some configurations' verdicts twice (a second round, at
    # times with another verdict): one record per (item, judge), the last, as replay always
    # read it; a repeated record is an error for the loader.
    votes = list({(v[0], v[1], v[2]): v for v in votes}.values())
    print("llmbar:", _write_jsonl(HERE / "llmbar_requests.jsonl", requests), "requests,",
          _write_votes(HERE / "llmbar_votes.csv", votes), "votes")


def crowd(src: Path, name: str) -> None:
    truth = {r["question"]: r["truth"]
             for r in csv.DictReader((src / "crowd" / f"{name}_truth.csv").open())}
    lab = {"1": "accept", "0": "reject"}
    requests = [{"id": f"{name}-{q}", "prompt": f"{name.upper()} item {q}", "category": name,
                 "candidates": [{"id": "a", "text": ""}], "gold": {"a": lab[t]}}
                for q, t in truth.items()]
    votes = [(f"{name}-{r['question']}", "a", f"w{r['worker']}", lab[r["answer"]], "")
             for r in csv.DictReader((src / "crowd" / f"{name}_answer.csv").open())]
    print(f"{name}:", _write_jsonl(HERE / f"{name}_requests.jsonl", requests), "requests,",
          _write_votes(HERE / f"{name}_votes.csv", votes), "votes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=HERE.parents[2] / "shared" / "data")
    args = ap.parse_args()
    xstest(args.src)
    llmbar(args.src)
    crowd(args.src, "rte")
    crowd(args.src, "temp")


if __name__ == "__main__":
    main()
