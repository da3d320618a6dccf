"""Start-up: wall time of `genlab train trainer=smoke` (the console script, in a temp dir) against the
import floor `python -c "import torch, torchvision, pytorch_lightning, torchmetrics, hydra"`, measured in
the same run, repetitions interleaved, medians compared. When the target is missed (or with --profile) it
also records where the time goes: `python -X importtime` of the same command (imports beyond the floor,
attributed to the genlab module that triggers them) and a cProfile of the whole run."""

from __future__ import annotations

import argparse
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import BIN, child_env, markdown_table, median, verdict, write_result

FLOOR_CODE = "import torch, torchvision, pytorch_lightning, torchmetrics, hydra"
MARGIN_S = 3.0
SMOKE_ARGS = ["train", "trainer=smoke"]


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=child_env(), timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return elapsed


def smoke_command(run_dir: Path) -> list[str]:
    return [str(BIN / "genlab"), *SMOKE_ARGS, f"hydra.run.dir={run_dir}"]


# importtime nests only module-level imports: a package imported inside a function at run time (genlab's
# lazy imports) shows at depth 0, with no importing module to name
RUNTIME_IMPORT = "(depth 0: imported inside a function at run time)"
IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)")


def import_tree(stderr: str) -> list[tuple[int, int, int, str]]:
    """(depth, self µs, cumulative µs, module) from `-X importtime` output, in Python's (post-order) order."""
    rows = []
    for line in stderr.splitlines():
        m = IMPORT_LINE.match(line)
        if m:
            rows.append((len(m.group(3)) // 2, int(m.group(1)), int(m.group(2)), m.group(4)))
    return rows


def importtime(cmd: list[str], cwd: Path) -> list[tuple[int, int, int, str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=600,
    )
    return import_tree(proc.stderr)


def imports_beyond_floor(smoke: list, floor: list) -> tuple[list[dict], list[dict]]:
    """Top-level packages the smoke run imports that the floor does not (cumulative ms, and which genlab
    module imported them), and each genlab module's own import cost."""
    floor_modules = {row[3] for row in floor}

    def is_extra(name: str) -> bool:
        return name not in floor_modules and not name.startswith("genlab")

    # importtime prints children before their parent: walk backwards keeping a stack of open parents
    extra: dict[str, dict] = {}
    genlab_costs = []
    stack: list[tuple[int, str]] = []
    for depth, self_us, cum_us, module in reversed(smoke):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent_genlab = next(
            (name for _, name in reversed(stack) if name.startswith("genlab")),
            RUNTIME_IMPORT if not stack else f"{stack[0][1]} (not genlab)",
        )
        if module.startswith("genlab"):
            genlab_costs.append({"module": module, "cumulative_ms": cum_us / 1000, "self_ms": self_us / 1000})
        top = module.split(".")[0]
        if is_extra(module) and not any(is_extra(name) for _, name in stack):
            entry = extra.setdefault(top, {"package": top, "cumulative_ms": 0.0, "imported_by": set()})
            entry["cumulative_ms"] += cum_us / 1000
            entry["imported_by"].add(parent_genlab)
        stack.append((depth, module))
    extras = sorted(extra.values(), key=lambda e: -e["cumulative_ms"])
    for entry in extras:
        entry["imported_by"] = sorted(entry["imported_by"])
    return extras, sorted(genlab_costs, key=lambda e: -e["cumulative_ms"])


def cprofile_top(run_dir: Path, cwd: Path, n: int = 60) -> list[dict]:
    """The n functions with the largest cumulative time in one smoke run (cProfile, in a child process)."""
    prof = cwd / "smoke.prof"
    code = (
        "import sys, cProfile; from genlab.cli import main; "
        f"sys.argv = ['genlab', {', '.join(repr(a) for a in SMOKE_ARGS)}, 'hydra.run.dir={run_dir}']; "
        f"cProfile.run('main()', {str(prof)!r})"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=child_env(), timeout=600
    )
    if not prof.is_file():
        return []
    stats = pstats.Stats(str(prof))
    rows = []
    for (file, line, func), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if file.startswith("<frozen") or file == "~":
            continue  # the import machinery and builtins wrap everything: they hide where time goes
        rows.append(
            {"function": f"{Path(file).name}:{line}({func})", "file": file, "cumulative_s": cumulative}
        )
    return sorted(rows, key=lambda r: -r["cumulative_s"])[:n]


def benchmark(repetitions: int = 5, profile: bool | None = False, warm: bool = True) -> dict:
    """profile: True always, False on a miss, None never (tiny runs)."""
    floor_cmd = [sys.executable, "-c", FLOOR_CODE]
    floor_times, smoke_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if warm:  # untimed: warm the page cache for both
            timed(floor_cmd, tmp)
            timed(smoke_command(tmp / "warm"), tmp)
        for rep in range(repetitions):
            pair = [("floor", floor_cmd), ("smoke", smoke_command(tmp / f"run{rep}"))]
            for name, cmd in pair if rep % 2 == 0 else reversed(pair):
                (floor_times if name == "floor" else smoke_times).append(timed(cmd, tmp))
        floor_s, smoke_s = median(floor_times), median(smoke_times)
        passed = smoke_s <= floor_s + MARGIN_S
        result = {
            "target": f"genlab train trainer=smoke <= import floor + {MARGIN_S} s",
            "command": " ".join(["genlab", *SMOKE_ARGS]),
            "floor_command": f'python -c "{FLOOR_CODE}"',
            "repetitions": repetitions,
            "floor_s": floor_times,
            "smoke_s": smoke_times,
            "floor_median_s": floor_s,
            "smoke_median_s": smoke_s,
            "overhead_s": smoke_s - floor_s,
            "passed": passed,
        }
        if profile or (profile is not None and not passed):
            floor_imports = importtime(["-c", FLOOR_CODE], tmp)
            smoke_imports = importtime(["-m", "genlab", *SMOKE_ARGS, f"hydra.run.dir={tmp / 'imp'}"], tmp)
            extras, genlab_costs = imports_beyond_floor(smoke_imports, floor_imports)
            result["profile"] = {
                "floor_imports_ms": sum(r[2] for r in floor_imports if r[0] == 0) / 1000,
                "smoke_imports_ms": sum(r[2] for r in smoke_imports if r[0] == 0) / 1000,
                "imports_beyond_floor": extras[:25],
                "genlab_module_import_ms": genlab_costs[:25],
                "cprofile_top_cumulative": cprofile_top(tmp / "prof", tmp),
            }
    result["table"] = markdown_table(
        ["floor median s", "smoke median s", "overhead s", f"target ≤ floor + {MARGIN_S} s"],
        [[floor_s, smoke_s, smoke_s - floor_s, verdict(passed)]],
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument(
        "--profile", action="store_true", help="record the import/cProfile breakdown even on a pass"
    )
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    result = benchmark(args.repetitions, args.profile)
    path = write_result("startup", result, *([args.results_dir] if args.results_dir else []))
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
