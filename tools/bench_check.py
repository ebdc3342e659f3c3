"""Wall time of `netspec check SPEC` in fresh processes, split into interpreter start, imports and work.

    python tools/bench_check.py [SPEC ...] [-n 15] [--no-pyc]

Each run is a new interpreter (the real one, `sys.executable`, not a pyenv shim) that times its own
`import netspec.cli` and its `cli.main(["check", SPEC])`, and says whether jax/flax/optax got imported.
The interpreter's bare start-up (`python -c pass`, site packages included) is measured the same way,
so `total ≈ startup + import + work`. Medians over N runs; the machine is shared, so also look at min.

By default compiled bytecode is kept in a private PYTHONPYCACHEPREFIX, warmed once, as an installed
package would have it. `--no-pyc` measures the checkout as this dev environment runs it
(PYTHONDONTWRITEBYTECODE=1: every netspec module compiled from source on every start).
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
heavy = sorted(m for m in ("jax", "flax", "optax", "numpy") if m in sys.modules)
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
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def bench(spec: str, n: int, env: dict[str, str]) -> dict[str, object]:
    keys = ("startup", "total", "import", "work", "startup_cpu", "total_cpu", "import_cpu", "work_cpu")
    r: dict[str, list[float]] = {k: [] for k in keys}
    heavy: set[str] = set()
    rc = 0
    for _ in range(n):
        wall, cpu, _ = _run([sys.executable, "-c", "pass"], env)
        r["startup"].append(wall)
        r["startup_cpu"].append(cpu)
        wall, cpu, _ = _run([sys.executable, "-m", "netspec.cli", "check", spec], env)
        r["total"].append(wall)
        r["total_cpu"].append(cpu)
        probe = json.loads(_run([sys.executable, "-c", _PROBE, spec], env)[2].strip().splitlines()[-1])
        for k in ("import", "work", "import_cpu", "work_cpu"):
            r[k].append(probe[k])
        heavy.update(probe["heavy"])
        rc = probe["rc"]
    return {**r, "heavy": sorted(heavy), "rc": rc}


def _ms(r: dict[str, object], key: str) -> str:
    wall, cpu = r[key], r[key + "_cpu"]
    assert isinstance(wall, list) and isinstance(cpu, list)
    return (f"wall {1000 * statistics.median(wall):5.0f} ms (min {1000 * min(wall):4.0f})   "
            f"cpu {1000 * statistics.median(cpu):5.0f} ms (min {1000 * min(cpu):4.0f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="*", help="spec files (default: specs/resnet152.yaml, else the fixture)")
    ap.add_argument("-n", type=int, default=15, help="runs per spec (default 15)")
    ap.add_argument("--no-pyc", action="store_true", help="compile netspec from source on every run")
    args = ap.parse_args()
    specs = args.specs or [next(s for s in DEFAULT_SPECS if (ROOT / s).exists())]
    with tempfile.TemporaryDirectory(prefix="netspec-pyc-") as tmp:
        env = _env(None if args.no_pyc else tmp)
        _run([sys.executable, "-m", "netspec.cli", "check", specs[0]], env)  # warm caches and .pyc
        print(f"python {sys.version.split()[0]} ({sys.executable}); "
              f"{'no .pyc (compiled every run)' if args.no_pyc else 'warm .pyc'}; median of {args.n}")
        for spec in specs:
            r = bench(spec, args.n, env)
            print(f"{spec}  (exit {r['rc']})")
            print(f"  `netspec check` total   {_ms(r, 'total')}")
            print(f"  interpreter start-up    {_ms(r, 'startup')}")
            print(f"  import netspec.cli      {_ms(r, 'import')}")
            print(f"  check work              {_ms(r, 'work')}")
            print(f"  heavy modules imported: {', '.join(r['heavy']) or 'none'}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
