"""Finding kernelspecs the way Jupyter does."""

from __future__ import annotations

from pathlib import Path

import pytest

import sidecar
from sidecar.kernel._kernelspec import find_kernelspecs, get_kernelspec


def test_python3_falls_back_to_this_interpreters_ipykernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sidecar.kernel import _kernelspec

    monkeypatch.setattr(_kernelspec, "kernel_dirs", lambda: [])
    assert "python3" in find_kernelspecs()
    spec = get_kernelspec("python3")
    assert spec.argv[1:3] == ["-m", "ipykernel_launcher"]
    assert spec.command("/c.json")[-1] == "/c.json"


def test_jupyter_path_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        '{"argv": ["python3", "-c", "{connection_file}"], "display_name": "Mine",'
        ' "interrupt_mode": "message", "env": {"A": "1"}}'
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    spec = get_kernelspec("python3")
    assert spec.display_name == "Mine"
    assert spec.interrupt_mode == "message"
    assert spec.env == {"A": "1"}
    assert spec.resource_dir == str(spec_dir)


def test_invalid_kernel_json_is_a_start_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_dir = tmp_path / "kernels" / "broken"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text('{"display_name": "no argv"}')
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(sidecar.KernelStartError, match="argv"):
        get_kernelspec("broken")
