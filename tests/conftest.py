"""Shared pytest options and fixtures.

`pytest --update-golden` rewrites tests/golden/*.check.txt from the current `netspec check` output
(review the diff before committing it).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.check.txt from the current netspec check output")


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis imports mypy_extensions while it reports a falsifying example; its deprecation
    # warning, made an error by filterwarnings=error, would hide the example behind an INTERNALERROR.
    config.addinivalue_line("filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@dataclass(frozen=True)
class CliResult:
    rc: int
    out: str
    err: str


def run_cli(args: Sequence[str]) -> CliResult:
    """`netspec ARGS` in this process, with stdout and stderr captured (argparse's exits included)."""
    from netspec import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(list(args))
        except SystemExit as e:  # argparse: --help (0) and usage errors (2)
            rc = e.code if isinstance(e.code, int) else 1
    return CliResult(rc, out.getvalue(), err.getvalue())


@pytest.fixture
def check_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Write TEXT to net.yaml in a temporary directory and run `netspec check net.yaml ARGS` there,
    so diagnostics read `net.yaml:LINE:COL: ...`."""
    monkeypatch.chdir(tmp_path)

    def run(text: str | bytes, *args: str) -> CliResult:
        data = text.encode() if isinstance(text, str) else text
        (tmp_path / "net.yaml").write_bytes(data)
        return run_cli(["check", "net.yaml", *args])

    return run
