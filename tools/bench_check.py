"""Wall time of `netspec check SPEC` in fresh processes, split into interpreter start, imports and work.

    python tools/bench_check.py [SPEC ...] [-n 15] [--no-pyc] [--baseline DIR]

Each run is a new interpreter (the real one, `sys.executable`, not a pyenv shim) that times its own
`import netspec.cli` and its `cli.main(["check", SPEC])`, and says whether jax/flax/optax/numpy or pydantic got imported.
The interpreter's bare start-up (`python -c pass`, site packages included) is measured the same way,
so `total ≈ startup + import + work`. Medians over N runs; the machine is shared, so also look at min.

By default compiled bytecode is kept in a private PYTHONPYCACHEPREFIX, warmed once, as an installed
package would have it. `--no-pyc` measures the checkout as this dev environment runs it
(PYTHONDONTWRITEBYTECODE=1: every netspec module compiled from source on every start).

`--instructions` counts executed instructions with valgrind (callgrind), once per variant: slow
(about a minute), but the same on a loaded machine as on an idle one, so small A/B differences show.

`--baseline DIR` also times another copy of the package (a directory holding `netspec/`, e.g.
`mkdir /tmp/base && git archive <commit> netspec | tar -x -C /tmp/base`), interleaving the runs of
the two so that a change in machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = ("specs/resnet152.yaml", "tests/fixtures/resnet152.yaml")

_PROBE = r"""
import sys, time, io, json, contextlib
t0, c0 = time.perf_counter(), time.process_time()
import netspec.cli
t1, c1 = time.perf_counter(), time.process_time()
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    rc = netspec.cli.main(["check", sys.argv[1]])
t2, c2 = time.perf_counter(), time.process_time()
heavy = sorted(m for m in ("jax", "flax", "optax", "numpy", "pydantic") if m in sys.modules)
print(json.dumps({"import": t1 - t0, "work": t2 - t1, "import_cpu": c1 - c0, "work_cpu": c2 - c1,
                  "rc": rc, "heavy": heavy}))
"""


def _env(pyc_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if pyc_dir is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pyc_dir
    return env


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, child CPU seconds, stdout). CPU time is steadier than wall on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=env["NETSPEC_BENCH_CWD"],
                          check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


KEYS = ("startup", "total", "import", "work", "startup_cpu", "total_cpu", "import_cpu", "work_cpu")


def _once(spec: str, env: dict[str, str], r: dict[str, object]) -> None:
    """One fresh-process measurement of each kind, added to `r`."""
    times: dict[str, list[float]] = r["times"]  # type: ignore[assignment]
    wall, cpu, _ = _run([sys.executable, "-c", "pass"], env)
    times["startup"].append(wall)
    times["startup_cpu"].append(cpu)
    wall, cpu, _ = _run([sys.executable, "-m", "netspec.cli", "check", spec], env)
    times["total"].append(wall)
    times["total_cpu"].append(cpu)
    probe = json.loads(_run([sys.executable, "-c", _PROBE, spec], env)[2].strip().splitlines()[-1])
    for k in ("import", "work", "import_cpu", "work_cpu"):
        times[k].append(probe[k])
    r["heavy"] = sorted(set(r["heavy"]) | set(probe["heavy"]))  # type: ignore[arg-type]
    r["rc"] = probe["rc"]


def bench(spec: str, n: int, envs: dict[str, dict[str, str]]) -> dict[str, dict[str, object]]:
    """Per variant (this checkout, the baseline): the timings of n interleaved rounds."""
    results: dict[str, dict[str, object]] = {
        name: {"times": {k: [] for k in KEYS}, "heavy": [], "rc": None} for name in envs}
    for _ in range(n):
        for name, env in envs.items():
            _once(spec, env, results[name])
    return results


def _instructions(cmd: list[str], env: dict[str, str]) -> int | None:
    """Instructions a command executes (valgrind's callgrind), or None without valgrind."""
    import re
    import shutil

    if shutil.which("valgrind") is None:
        return None
    real = os.path.realpath(sys.executable)  # not a shim: valgrind would count the shell script
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", real, *cmd[1:]],
                          env=env, capture_output=True, text=True, cwd=env["NETSPEC_BENCH_CWD"], check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    return int(found.group(1)) if found else None


def _ms(r: dict[str, object], key: str) -> str:
    times: dict[str, list[float]] = r["times"]  # type: ignore[assignment]
    wall, cpu = times[key], times[key + "_cpu"]
    return (f"wall {1000 * statistics.median(wall):5.0f} ms (min {1000 * min(wall):4.0f})   "
            f"cpu {1000 * statistics.median(cpu):5.0f} ms (min {1000 * min(cpu):4.0f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="*", help="spec files (default: specs/resnet152.yaml, else the fixture)")
    ap.add_argument("-n", type=int, default=15, help="runs per spec (default 15)")
    ap.add_argument("--no-pyc", action="store_true", help="compile netspec from source on every run")
    ap.add_argument("--baseline", metavar="DIR", help="also time the netspec package under DIR, interleaved")
    ap.add_argument("--instructions", action="store_true", help="also count instructions with valgrind")
    args = ap.parse_args()
    specs = [str(Path(s).resolve()) for s in args.specs] or \
        [str(ROOT / next(s for s in DEFAULT_SPECS if (ROOT / s).exists()))]
    with tempfile.TemporaryDirectory(prefix="netspec-bench-") as tmp:
        # Run from an empty directory with the package on PYTHONPATH: `python -m`/`-c` put the
        # working directory first on sys.path, which would shadow a baseline copy.
        env = _env(None if args.no_pyc else f"{tmp}/current")
        env["PYTHONPATH"] = str(ROOT)
        env["NETSPEC_BENCH_CWD"] = tmp
        envs = {"this checkout": env}
        if args.baseline:
            base = _env(None if args.no_pyc else f"{tmp}/baseline")
            base["PYTHONPATH"] = str(Path(args.baseline).resolve())
            base["NETSPEC_BENCH_CWD"] = tmp
            envs["baseline " + args.baseline] = base
        for e in envs.values():
            _run([sys.executable, "-m", "netspec.cli", "check", specs[0]], e)  # warm caches and .pyc
        print(f"python {sys.version.split()[0]} ({sys.executable}); "
              f"{'no .pyc (compiled every run)' if args.no_pyc else 'warm .pyc'}; median of {args.n}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for spec in specs:
            for name, r in bench(spec, args.n, envs).items():
                print(f"{Path(spec).relative_to(ROOT) if spec.startswith(str(ROOT)) else spec} — {name} "
                      f"(exit {r['rc']})")
                print(f"  `netspec check` total   {_ms(r, 'total')}")
                print(f"  interpreter start-up    {_ms(r, 'startup')}")
                print(f"  import netspec.cli      {_ms(r, 'import')}")
                print(f"  check work              {_ms(r, 'work')}")
                heavy: list[str] = r["heavy"]  # type: ignore[assignment]
                print(f"  heavy modules imported: {', '.join(heavy) or 'none'}")
            if args.instructions:
                for name, env_ in envs.items():
                    start = _instructions([sys.executable, "-c", "pass"], env_)
                    imp = _instructions([sys.executable, "-c", "import netspec.cli"], env_)
                    tot = _instructions([sys.executable, "-m", "netspec.cli", "check", spec], env_)
                    if start is None or imp is None or tot is None:
                        print("  (valgrind unavailable)")
                        break
                    print(f"  instructions, {name}: total {tot / 1e6:,.0f} M = start-up {start / 1e6:,.0f} M"
                          f" + import {(imp - start) / 1e6:,.0f} M + check {(tot - imp) / 1e6:,.0f} M")
    return 0


if __name__ == "__main__":
    sys.exit(main())
