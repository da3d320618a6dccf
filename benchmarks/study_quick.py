"""`genlab study study=quick` as a new user meets it: an empty cache (the domain classifier is trained too), a
fresh study folder, and another CPU-bound process holding one core for the whole study (issue 22's
condition: "on 2 cores even when another process uses one of them"). Reports the wall time, the CPU
seconds of the study and its children, the estimate the study printed before it started, and the verdict
table's row count.

    python -m benchmarks.study_quick [--busy 1] [overrides ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import BIN, REPO, markdown_table
from benchmarks.quality import timed
from genlab.study.render import STATUS_MARK

TARGET_S = 300.0
TARGET = "genlab study study=quick <= 5 min wall on 2 cores while another process holds one core"


def spin() -> None:  # the other process: a pure-Python busy loop, one core
    while True:
        pass


def benchmark(busy: int = 1, overrides: tuple[str, ...] = ()) -> dict:
    with tempfile.TemporaryDirectory(prefix="genlab-study-quick-") as tmp:
        root = Path(tmp)
        # an empty cache of its own: the domain classifier is trained inside the study, as for a new user
        command = [
            str(BIN / "genlab"), "study", "study=quick", f"paths.root_dir={root}",
            f"paths.cache_dir={root / 'cache'}", *overrides,
        ]  # fmt: skip
        spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(busy)]
        for p in spinners:
            p.start()
        time.sleep(2)  # let the load average see them
        load_start = os.getloadavg()[0]
        try:  # timed's CPU seconds are read when the study ends, before the spinners are reaped
            wall, cpu, stdout = timed(command, REPO, timeout=3600)
        finally:
            for p in spinners:
                p.terminate()
                p.join()
        estimate = next((line for line in stdout.splitlines() if "estimated time" in line), "")
        marks = tuple(mark.split()[0] for mark in STATUS_MARK.values())
        verdict_rows = sum(line.startswith(marks) for line in stdout.splitlines())
        report = root / "outputs" / "study" / "quick" / "report.html"
        result = {
            "wall_s": round(wall, 1),
            "cpu_s_study_and_children": round(cpu, 1),
            "busy_processes": busy,
            "load_average_1m_at_start": round(load_start, 2),
            "estimate_printed": estimate,
            "verdict_rows": verdict_rows,
            "report_written": report.is_file(),
            "command": "genlab study study=quick " + " ".join(overrides),
        }
    rows = [[result["wall_s"], result["cpu_s_study_and_children"], busy, result["load_average_1m_at_start"]]]
    return {
        "target": TARGET,
        "passed": bool(result["report_written"] and result["wall_s"] <= TARGET_S),
        "result": result,
        "table": markdown_table(
            ["wall s", "CPU s (study + its training processes)", "busy processes beside it", "load at start"],
            rows,
        ),
        "notes": [
            f"estimate printed before training: {estimate.removeprefix('study: ')}",
            f"{verdict_rows} verdict rows printed; from an empty cache: the domain classifier is trained "
            "inside the study",
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes beside the study")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    print(json.dumps(benchmark(args.busy, tuple(args.overrides)), indent=1))


if __name__ == "__main__":
    main()
