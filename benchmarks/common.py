"""What every benchmark shares: the machine description, result files, medians and child processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"
BIN = Path(sys.executable).parent


def environment() -> dict:
    """Core count, torch version, thread count and date: what makes two result files comparable."""
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "git_commit": commit,
    }


def merge_families(old: dict, new: dict, batch_size: int, steps: int, order=None) -> dict:
    """`--merge` of the per-family benchmarks: the family rows of an earlier result file `old` that `new`
    (this run's rows) does not re-measure, each stamped with the run that measured it (unless it carries a
    stamp already), then `new`'s rows; in `order` when given. Refuses (SystemExit) a file measured with
    another batch size or steps per round: its ratios would not compare."""
    settings = old["settings"]
    if (settings["batch_size"], settings["steps_per_round"]) != (batch_size, steps):
        raise SystemExit("--merge: the existing file was measured with other settings; run every family")
    stamp = {k: old["environment"][k] for k in ("date_utc", "git_commit")}
    # a row's own stamp (from an earlier merge) wins over its file's
    merged = {f: {"measured": stamp, **row} for f, row in old["families"].items() if f not in new}
    merged.update(new)
    return {f: merged[f] for f in order if f in merged} if order is not None else merged


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def write_result(name: str, payload: dict, results_dir: Path = RESULTS_DIR) -> Path:
    """benchmarks/results/<name>.json with the machine description attached."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    payload = {"benchmark": name, "environment": environment(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def child_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: offline W&B, repo importable, no Hydra traceback noise."""
    env = dict(os.environ)
    env.update({"WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", "PYTHONUNBUFFERED": "1"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_json_child(args: list[str], timeout: float = 1800, cwd: Path | None = None) -> dict:
    """Run `python -m <args>` in a fresh process; its last stdout line is a JSON object, returned."""
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=cwd,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak resident set size (ru_maxrss, KiB on Linux) in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident set size now, from /proc (Linux); NaN elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process, so `window_peak_rss_mb` measures from now."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def window_peak_rss_mb() -> float:
    """VmHWM (peak resident set size since the last `reset_peak_rss`) in MiB; NaN where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
