"""Medians over the rounds of benchmarks/compare.sh or replay.sh (one JSON line per server
and round on stdin: {"server", "round", "result"}); prints one summary JSON line.

    ... | python benchmarks/summarize_rounds.py
"""

from __future__ import annotations

import json
import statistics
import sys


def main() -> None:
    runs = [json.loads(line) for line in sys.stdin if line.strip()]
    rounds: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["result"]:
            rounds.setdefault(run["round"], {})[run["server"]] = run["result"]["enrollments_per_s"]
    ratios = [v["pqscep"] / v["micromdm"] for v in rounds.values() if len(v) == 2 and v["micromdm"]]
    keys = sorted({key for run in runs if run["result"] for key in run["result"]
                   if isinstance(run["result"][key], (int, float)) and key not in ("count", "concurrency")})

    def median(server: str, key: str):
        values = [r["result"][key] for r in runs if r["server"] == server and r["result"] and key in r["result"]
                  and r["result"][key] is not None]
        return statistics.median(values) if values else None

    print(json.dumps({"summary": {
        "rounds": len(rounds),
        "median_ratio": round(statistics.median(ratios), 2) if ratios else None,
        "ratios": [round(x, 2) for x in ratios],
        **{f"{server}_median_{key}": median(server, key) for server in ("micromdm", "pqscep") for key in keys},
    }}))


if __name__ == "__main__":
    main()
