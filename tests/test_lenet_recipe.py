"""The README's promise: `netspec train specs/lenet.yaml` with its defaults reaches at least 98.5% top-1
on the 2,000 held-out digits of the bundled MNIST sample, and its last line says so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from netspec.cli import main

LENET = Path(__file__).parents[1] / "specs" / "lenet.yaml"


@pytest.mark.slow
def test_lenet_defaults_reach_98_5_percent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "lenet"
    # Only the seed is fixed (the spec leaves it to the clock, as Caffe does); seeds 1-5 gave 98.8-99.2% (docs/training.md).
    assert main(["train", str(LENET), "-o", str(run), "--seed", "1", "--progress", "plain",
                 "--compile-cache", "off"]) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    match = re.match(r"test accuracy (\d+\.\d)% \(top-1\), [\d.]+% \(top-5\) after 2000 iterations, \d+ s; ", last)
    assert match, last
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_test"]["accuracy"] >= 0.985
    assert float(match.group(1)) == pytest.approx(100 * summary["final_test"]["accuracy"], abs=0.051)
    assert summary["iterations"] == 2000 and summary["ok"]
