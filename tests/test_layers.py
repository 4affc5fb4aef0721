"""The architecture, checked: layers import downward only, zmq stays in the
transport, the wire layer does no I/O, no cycles (the contracts are in
pyproject.toml, ``[tool.importlinter]``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_contract_is_kept() -> None:
    # In a process of its own: import-linter configures logging with
    # dictConfig, which disables every logger that exists (ours included)
    # for the rest of the test session.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command as c; c()",
            "--config",
            os.fspath(ROOT / "pyproject.toml"),
            "--no-cache",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "BROKEN" not in report
    assert report.count("KEPT") == 5, report


def test_import_sidecar_leaves_the_bench_harness_the_cli_and_httpx_alone() -> None:
    # httpx (a tenth of a second) is loaded when a Jupyter Server is first used.
    code = (
        "import sys, sidecar; "
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['sidecar', 'bench'], ['sidecar', 'cli']) or m.split('.')[0] == 'httpx'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"
