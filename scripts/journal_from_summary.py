"""Rebuild an `experiment compare` journal (runs.jsonl) from a committed compare summary.json.

Run directories are not committed; their summary.json is (docs/figures/compare_summary.json).
This recreates one journal row per (profile, algo, variant, seed) found there
(``slicetwin.experiments.compare.journal_from_summary``), so that `slicetwin experiment compare
--resume` runs only the missing cells of the grid and `--report-only` tables old and new runs
together.

    .venv/bin/python scripts/journal_from_summary.py docs/figures/compare_summary.json \
        runs/compare/runs.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from slicetwin.experiments.compare import journal_from_summary


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    rows = journal_from_summary(json.loads(src.read_text()), str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and dst.read_text().strip():
        sys.exit(f"{dst} is not empty; refusing to overwrite a journal")
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(json.dumps({"rows": len(rows), "journal": str(dst)}))


if __name__ == "__main__":
    main()
