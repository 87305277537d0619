"""Reports of a run: files (summary.json, decisions.jsonl/csv, votes.csv) and HTML."""
