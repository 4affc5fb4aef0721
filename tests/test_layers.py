"""The architecture, checked: layers import downward only, zmq stays in the
transport, the wire layer does no I/O, no cycles (the contracts are in
pyproject.toml, ``[tool.importlinter]``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

importlinter_cli = pytest.importorskip("importlinter.cli")

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_contract_is_kept(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    status = importlinter_cli.lint_imports(
        config_filename=os.fspath(ROOT / "pyproject.toml"), no_cache=True, no_logo=True
    )
    report = capsys.readouterr().out
    assert status == 0, report
    assert "BROKEN" not in report
    assert report.count("KEPT") == 5


def test_import_sidecar_leaves_the_bench_harness_and_the_cli_alone() -> None:
    import subprocess
    import sys

    code = (
        "import sys, sidecar; "
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['sidecar', 'bench'], ['sidecar', 'cli'])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"
