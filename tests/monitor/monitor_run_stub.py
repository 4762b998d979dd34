"""Test-only stand-in for ``batchlane monitor run``, speaking its documented contract:
``--baseline DIR --data FILE [--data ...] --output DIR [--threshold F] [--schedule-name S]
[--endpoint-name E]``; exit 0 = no drift, 4 = drift, 1 = error;
writes ``constraint_violations.json`` and ``summary.json`` into the output folder. A data line containing
``DRIFT`` is a violation. Used only where a test must exercise the scheduler before the real command exists."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--schedule-name")
    parser.add_argument("--endpoint-name")
    args = parser.parse_args()
    if not Path(args.baseline).is_dir():
        print(f"error: --baseline {args.baseline}: no such folder", file=sys.stderr)
        return 1
    lines = [line for uri in args.data for line in Path(uri).read_text().splitlines() if line.strip()]
    violations = [
        {
            "feature_name": "sent_cosine_score",
            "constraint_check_type": "baseline_drift_check",
            "sentence": line,
            "avg_cosine_score": 0.1,
            "monitoring_schedule_name": args.schedule_name,
        }
        for line in lines
        if "DRIFT" in line
    ]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "constraint_violations.json").write_text(json.dumps({"violations": violations}))
    (out / "summary.json").write_text(json.dumps({"records": len(lines), "drift": bool(violations)}))
    return 4 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
