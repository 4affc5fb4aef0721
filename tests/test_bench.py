"""``sidecar.bench`` and ``sidecar bench``: timing code and notebooks on real kernels."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from conftest import kernel_processes_of

import sidecar
import sidecar.bench
from sidecar.bench._variants import name_variants

pytestmark = pytest.mark.kernel


def sidecar_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args], capture_output=True, text=True, timeout=60
    )


def in_seq_order(result: sidecar.bench.BenchResult) -> list[sidecar.bench.BenchSample]:
    return sorted((s for v in result.variants for s in v.samples), key=lambda s: s.seq)


def assert_no_kernels_left() -> None:
    if Path("/proc").is_dir():
        assert kernel_processes_of(os.getpid()) == []


# -- statistics and names, no kernel ----------------------------------------------


def test_stats_of_known_values() -> None:
    stats = sidecar.bench.BenchStats.of([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (stats.count, stats.mean, stats.median, stats.min, stats.max) == (5, 3.0, 3.0, 1.0, 5.0)
    assert stats.stdev == pytest.approx(math.sqrt(2.5))
    assert stats.p95 == pytest.approx(4.8)
    assert stats.p99 == pytest.approx(4.96)
    assert stats.spread == pytest.approx(2 / 3)  # quartiles 2 and 4, median 3
    one = sidecar.bench.BenchStats.of([0.25])
    assert (one.p95, one.p99, one.stdev, one.spread) == (0.25, 0.25, 0.0, 0.0)
    with pytest.raises(ValueError, match="no values"):
        sidecar.bench.BenchStats.of([])


def test_variant_names() -> None:
    found = name_variants(
        [
            "pass",
            "pass",
            Path("dir/nb.ipynb"),
            "x = 1\ny = 2",
            {"mine": "1", "other": Path("o.ipynb")},
        ]
    )
    assert [v.name for v in found] == ["pass", "pass #2", "nb.ipynb", "x = 1 ...", "mine", "other"]
    assert found[2] == sidecar.bench.BenchVariant(
        "nb.ipynb", notebook=os.fspath(Path("dir/nb.ipynb"))
    )
    assert found[5].notebook == "o.ipynb"
    assert found[4].code == "1"
    # A given name wins; a made-up one steps aside.
    assert [v.name for v in name_variants(["1", {"1 #2": "2", "1": "3"}])] == ["1 #3", "1 #2", "1"]


# -- the library on real kernels --------------------------------------------------


@pytest.mark.anyio
async def test_code_samples_stats_and_json(anyio_backend: str) -> None:
    result = await sidecar.bench.run("pass", n=8)
    assert (result.backend, result.n, result.kernels, result.warmup) == (anyio_backend, 8, 1, 1)
    [v] = result.variants
    assert (v.name, v.code, v.notebook, v.runs) == ("pass", "pass", None, 8)
    assert [s.index for s in v.samples] == list(range(8))
    assert len(v.pids) == 1
    for s in v.samples:
        assert s.kernel is not None
        assert s.overhead is not None
        assert 0 < s.kernel <= s.wall < 5
        assert s.overhead == pytest.approx(s.wall - s.kernel)
        assert (s.pid, s.lane, s.launch) == (v.pids[0], 0, None)
    assert v.kernel is not None
    assert v.overhead is not None
    assert v.wall.count == v.kernel.count == v.overhead.count == 8
    assert 0 < v.wall.min <= v.wall.median <= v.wall.p99 <= v.wall.max
    assert v.kernel.median <= v.wall.median
    assert v.launch is None
    assert v.wait is None
    assert v.first_output is None  # "pass" prints nothing
    assert all(s.first_output is None for s in v.samples)
    # At least busy, execute_input, idle and the reply, per run.
    assert v.messages is not None
    assert v.bytes is not None
    assert v.messages >= 4 * 8
    assert v.bytes > 100 * v.messages
    assert v.throughput == pytest.approx(8 / v.elapsed)
    assert v.elapsed >= sum(s.wall for s in v.samples)
    assert v.client_cpu > 0
    if sys.platform == "linux":
        assert v.kernel_cpu is not None
        assert v.kernel_cpu >= 0
        assert v.kernel_max_rss is not None
        assert v.kernel_max_rss > 10 * 2**20
        assert result.client_max_rss is not None
        assert result.client_max_rss > 10 * 2**20
    assert_no_kernels_left()

    data = json.loads(result.to_json())
    wall = data["variants"][0]["wall"]
    assert set(wall) == {"count", "mean", "median", "p95", "p99", "min", "max", "stdev", "spread"}
    assert wall["median"] == v.wall.median
    assert len(data["variants"][0]["samples"]) == 8
    assert msgspec.json.decode(result.to_json(), type=sidecar.bench.BenchResult) == result
    lean = json.loads(result.to_json(samples=False))
    assert lean["variants"][0]["samples"] == lean["timeline"] == []
    # A result saved before these fields existed still loads (for --compare).
    new = ("first_output", "wait", "messages", "bytes", "kernel_mean_rss", "kernel_peak_rss")
    for key in ("pool_size", "reuse", "rate", "sample_interval", "timeline"):
        del data[key]
    for key in (*new, "achieved_rate", "max_late"):
        del data["variants"][0][key]
    old = msgspec.json.decode(json.dumps(data), type=sidecar.bench.BenchResult)
    assert (old.timeline, old.variants[0].messages, old.pool_size) == ([], None, None)

    table = result.render()
    assert "8 runs per variant on 1 python3 kernel, reused kernels, warm-up 1" in table
    for word in ("median", "p99", "spread", "wall", "kernel", "overhead", "runs/s", "MiB"):
        assert word in table
    for word in ("msgs/run", "KiB/run", "kernel RSS mean/peak", "kernel VmHWM"):
        assert word in table
    assert "vs first" not in table  # one variant: nothing to compare with


@pytest.mark.anyio
async def test_variants_take_turns_unless_told_not_to(anyio_backend: str) -> None:
    variants = {"a": "pass", "b": "x = 1"}
    result = await sidecar.bench.run(variants, n=3)
    assert [s.variant for s in in_seq_order(result)] == ["a", "b"] * 3
    a, b = result.variants
    assert (a.name, b.name, a.code, b.code) == ("a", "b", "pass", "x = 1")
    assert set(a.pids).isdisjoint(b.pids)

    apart = await sidecar.bench.run(variants, n=3, interleave=False, warmup=0)
    assert [s.variant for s in in_seq_order(apart)] == ["a"] * 3 + ["b"] * 3
    assert not apart.interleave
    assert_no_kernels_left()


@pytest.mark.anyio
async def test_runs_spread_over_kernels_at_once(anyio_backend: str) -> None:
    result = await sidecar.bench.run("import time; time.sleep(0.1)", n=4, kernels=2, warmup=0)
    [v] = result.variants
    assert len(set(v.pids)) == len(v.pids) == 2
    for s in v.samples:
        assert s.lane == s.index % 2
        assert s.pid == v.pids[s.lane]
    # Two kernels ran at once: the turns took about half the runs' total.
    assert v.elapsed < 0.75 * sum(s.wall for s in v.samples)
    assert v.throughput > 4 / sum(s.wall for s in v.samples)
    assert_no_kernels_left()


@pytest.mark.anyio
async def test_fresh_kernel_per_run(anyio_backend: str) -> None:
    # Raises on a kernel that ran it before: only fresh kernels pass.
    code = "assert 'seen' not in globals()\nseen = True"
    result = await sidecar.bench.run(code, n=3, fresh=True)
    [v] = result.variants
    assert (result.fresh, result.warmup) == (True, 0)
    assert len(set(v.pids)) == len(v.pids) == 3
    assert len({s.pid for s in v.samples}) == 3
    assert all(s.launch is not None and s.launch > 0 for s in v.samples)
    assert v.launch is not None
    assert v.launch.count == 3
    assert_no_kernels_left()

    later = await sidecar.bench.run(code, n=2, fresh=True, launch_ahead=False)
    assert len(set(later.variants[0].pids)) == 2
    assert_no_kernels_left()
    with pytest.raises(sidecar.ExecutionError, match="AssertionError"):
        await sidecar.bench.run(code, n=2)  # the warm-up ran it already
    assert_no_kernels_left()


@pytest.mark.anyio
async def test_notebook_variant(anyio_backend: str, tmp_path: Path) -> None:
    where = tmp_path / "nbdir"
    where.mkdir()
    path = where / "bench.ipynb"
    notebook = sidecar.new_notebook(
        cells=[
            sidecar.new_markdown_cell("# timed"),
            sidecar.new_code_cell("import os, time\nhere = os.path.basename(os.getcwd())"),
            sidecar.new_code_cell("time.sleep(0.02)\nassert here == 'nbdir'\nprint(here)"),
        ]
    )
    sidecar.save_notebook(notebook, path)
    before = path.read_bytes()
    result = await sidecar.bench.run(path, "pass", n=2)
    nb, code = result.variants
    assert (nb.name, nb.notebook, nb.code, nb.runs) == ("bench.ipynb", str(path), None, 2)
    assert code.name == "pass"
    for s in nb.samples:
        assert s.kernel is not None
        assert 0.02 <= s.kernel <= s.wall
        # The print comes after the sleep, so after 20 ms.
        assert s.first_output is not None
        assert 0.02 <= s.first_output <= s.wall
    assert nb.first_output is not None
    assert code.first_output is None
    assert path.read_bytes() == before  # timed, not written
    assert_no_kernels_left()


@pytest.mark.anyio
async def test_first_output_bytes_and_ratios(anyio_backend: str) -> None:
    variants = {"loud": "import time; time.sleep(0.02); print('x' * 100_000)", "quiet": "pass"}
    result = await sidecar.bench.run(variants, n=3)
    loud, quiet = result.variants
    for s in loud.samples:
        assert s.first_output is not None
        assert 0.02 <= s.first_output <= s.wall
    assert loud.first_output is not None
    assert loud.first_output.count == 3
    assert quiet.first_output is None
    assert loud.bytes is not None
    assert quiet.bytes is not None
    assert loud.bytes >= 3 * 100_000 > quiet.bytes
    table = result.render()
    assert "first output" in table
    assert "vs first: the first variant's median wall time / this one's (>1 = faster)" in table
    ratio = loud.wall.median / quiet.wall.median
    # Its row of the times table, then of the usage table.
    _, usage = [line for line in table.splitlines() if line.startswith("quiet ")]
    assert f"{ratio:.2f}x" in usage.split()
    assert_no_kernels_left()


@pytest.mark.anyio
async def test_pool_hands_out_kernels_and_reuse_resets_them(anyio_backend: str) -> None:
    # Raises on a kernel whose namespace saw it before.
    code = "assert 'seen' not in globals()\nseen = True"
    result = await sidecar.bench.run(code, n=3, pool_size=2)
    [v] = result.variants
    assert (result.pool_size, result.reuse, result.fresh, result.warmup) == (2, False, False, 0)
    assert len(set(v.pids)) == len(v.pids) == 3  # one kernel per run
    assert all(s.wait is not None and s.wait >= 0 and s.launch is None for s in v.samples)
    assert v.wait is not None
    assert v.wait.count == 3
    if sys.platform == "linux":
        assert v.kernel_cpu is not None
        assert v.kernel_cpu >= 0
    assert "from a pool of 2 per variant, each used once" in result.render()
    assert_no_kernels_left()

    # Two kernels in each variant's pool, reset between runs; the variants'
    # pools are their own.
    again = await sidecar.bench.run({"a": code, "b": code}, n=4, kernels=2, reuse=True)
    a, b = again.variants
    assert (again.pool_size, again.reuse) == (2, True)
    assert len(a.pids) == len(b.pids) == 2
    assert set(a.pids).isdisjoint(b.pids)
    assert {s.pid for s in a.samples} == set(a.pids)
    assert "reset and reused" in again.render()
    assert_no_kernels_left()


@pytest.mark.anyio
async def test_open_loop_shows_queueing_past_what_the_kernel_serves(anyio_backend: str) -> None:
    # A run takes the kernel about 55 ms: it serves about 18 runs a second.
    code = "import time; time.sleep(0.05)"
    calm = await sidecar.bench.run(code, n=8, rate=5)
    flooded = await sidecar.bench.run(code, n=8, rate=40)
    for result, rate in ((calm, 5), (flooded, 40)):
        [v] = result.variants
        assert (result.rate, result.interleave) == (rate, False)
        assert v.achieved_rate == pytest.approx(rate, rel=0.25)
        assert v.max_late is not None
        assert v.max_late >= 0
        assert all(s.late is not None for s in v.samples)
        assert f"open loop at {rate} runs/s" in result.render()
    [c], [f] = calm.variants, flooded.variants
    # At 5/s each run finds the kernel idle; at 40/s runs queue behind each
    # other, and each waits longer than the one before.
    assert c.wall.p95 < 0.15
    assert f.wall.p95 > 2 * c.wall.p95
    walls = [s.wall for s in f.samples]
    assert walls[-1] > walls[0] + 0.15
    assert f.kernel is not None
    assert f.kernel.median < 0.1  # the kernel's own time did not grow: the queue did

    # The sampler followed the client and the kernel all along.
    timeline = flooded.timeline
    assert flooded.sample_interval == 0.1
    if sys.platform == "linux":
        client = [s for s in timeline if s.variant is None]
        kernel = [s for s in timeline if s.variant == f.name]
        assert len(client) >= 3
        assert {s.pid for s in client} == {os.getpid()}
        assert {s.pid for s in kernel} == set(f.pids)
        assert [s.t for s in timeline] == sorted(s.t for s in timeline)
        # Sampled from its start (a kernel just started is small), to when it ran.
        assert all(s.rss > 0 and s.cpu >= 0 for s in timeline)
        assert max(s.rss for s in kernel) > 10 * 2**20
        assert f.kernel_mean_rss is not None
        assert f.kernel_peak_rss is not None
        assert 0 < f.kernel_mean_rss <= f.kernel_peak_rss
        assert flooded.client_peak_rss is not None
    assert_no_kernels_left()


@pytest.mark.anyio
async def test_failures_raise_once_and_leave_no_kernel(anyio_backend: str) -> None:
    with pytest.raises(sidecar.ExecutionError, match="ZeroDivisionError"):
        await sidecar.bench.run("1/0", n=4, kernels=2)
    assert_no_kernels_left()
    with pytest.raises(ValueError, match="must differ"):
        await sidecar.bench.run({"a": "1"}, sidecar.bench.BenchVariant("a", code="2"))
    with pytest.raises(ValueError, match="at least 1"):
        await sidecar.bench.run("pass", n=0)
    with pytest.raises(ValueError, match="at least 1"):
        await sidecar.bench.run("pass", kernels=0)
    with pytest.raises(ValueError, match="negative"):
        await sidecar.bench.run("pass", warmup=-1)
    with pytest.raises(ValueError, match="at least one variant"):
        await sidecar.bench.run()
    with pytest.raises(ValueError, match="exactly one"):
        sidecar.bench.BenchVariant("neither")
    with pytest.raises(sidecar.NoSuchKernel):
        await sidecar.bench.run("pass", kernel_name="no-such-kernel")
    with pytest.raises(sidecar.NotebookError, match="not valid JSON"):
        await sidecar.bench.run(Path(__file__))
    with pytest.raises(ValueError, match="no pool"):
        await sidecar.bench.run("pass", fresh=True, reuse=True)
    with pytest.raises(ValueError, match="no pool"):
        await sidecar.bench.run("pass", fresh=True, pool_size=2)
    with pytest.raises(ValueError, match="pool_size"):
        await sidecar.bench.run("pass", pool_size=0)
    with pytest.raises(ValueError, match="not with fresh or a pool"):
        await sidecar.bench.run("pass", rate=5, reuse=True)
    with pytest.raises(ValueError, match="not notebooks"):
        await sidecar.bench.run(Path("nb.ipynb"), rate=5)
    with pytest.raises(ValueError, match="runs per second"):
        await sidecar.bench.run("pass", rate=0)
    with pytest.raises(ValueError, match="sample_interval"):
        await sidecar.bench.run("pass", sample_interval=0)
    assert_no_kernels_left()


# -- the command line -------------------------------------------------------------


def test_cli_json() -> None:
    done = sidecar_cli("bench", "pass", "-n", "20", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["n"], data["kernels"], data["backend"]) == (20, 1, "trio")
    [v] = data["variants"]
    assert (v["name"], v["runs"], v["wall"]["count"], len(v["samples"])) == ("pass", 20, 20, 20)
    assert 0 < v["kernel"]["median"] <= v["wall"]["median"]


def test_cli_json_two_kernels_on_asyncio() -> None:
    done = sidecar_cli("--backend", "asyncio", "bench", "pass", "-n", "20", "-k", "2", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["kernels"], data["backend"]) == (2, "asyncio")
    [v] = data["variants"]
    assert len(set(v["pids"])) == 2
    assert v["runs"] == 20


def test_cli_table_names_and_notebooks(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    sidecar.save_notebook(sidecar.new_notebook(cells=[sidecar.new_code_cell("x = 1")]), path)
    done = sidecar_cli("bench", "pass", "x = 2", "--name", "p", "--notebook", str(path), "-n", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 runs per variant on 1 python3 kernel")
    firsts = [line.split("  ")[0] for line in lines if "  wall  " in line]
    assert firsts == ["p", "x = 2", "nb.ipynb"]
    assert "vs first" in done.stdout


def test_cli_failures() -> None:
    done = sidecar_cli("bench", "1/0", "-n", "2")
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stderr
    done = sidecar_cli("bench")
    assert done.returncode == 2
    assert "needs code or --notebook" in done.stderr
    done = sidecar_cli("bench", "pass", "--name", "a", "--name", "b")
    assert done.returncode == 2
    for args, says in [
        (["--fresh", "--reuse"], "not with --reuse"),
        (["--fresh", "--pool-size", "2"], "not with --pool-size"),
        (["--rate", "5", "--pool-size", "2"], "--rate runs on kernels of its own"),
        (["--rate", "0"], "expected runs per second > 0"),
        (["--rate", "5", "--notebook", __file__], "not with --notebook"),
    ]:
        done = sidecar_cli("bench", "pass", *args)
        assert done.returncode == 2, args
        assert says in done.stderr
        assert len(done.stderr.splitlines()) == 1  # one line, no traceback


def test_notebook_kernel_time_counts_cells_run_now_and_takes_naive_dates_as_utc() -> None:
    from sidecar.bench._probes import notebook_kernel_seconds

    def cell(started: str, idle: str) -> dict[str, object]:
        timing = {"shell.execute_reply.started": started, "iopub.status.idle": idle}
        return {
            "cell_type": "code",
            "metadata": {"execution": timing},
            "source": "",
            "outputs": [],
            "execution_count": None,
        }

    def notebook(*cells: dict[str, object]) -> sidecar.Notebook:
        document = {"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": list(cells)}
        return sidecar.read_notebook(json.dumps(document).encode())

    untimed = notebook(
        {"cell_type": "code", "metadata": {}, "source": "", "outputs": [], "execution_count": None}
    )
    assert notebook_kernel_seconds(untimed) is None
    mixed = notebook(
        cell("2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.250000"),
        cell("2026-01-01T00:00:01", "2026-01-01T00:00:01.500000+00:00"),
    )
    assert notebook_kernel_seconds(mixed) == pytest.approx(0.75)


# -- --save and --compare ------------------------------------------------------------


def _scaled(path: Path, factor: float) -> Path:
    """A copy of a saved result whose wall times are ``factor`` times as long."""
    data = json.loads(path.read_text())
    for variant in data["variants"]:
        for key in ("mean", "median", "p95", "p99", "min", "max"):
            variant["wall"][key] *= factor
    scaled = path.with_name(f"scaled-{factor}.json")
    scaled.write_text(json.dumps(data))
    return scaled


def test_save_and_compare_fail_on_a_regression(tmp_path: Path) -> None:
    saved = tmp_path / "before.json"
    done = sidecar_cli("bench", "pass", "-n", "5", "--name", "nothing", "--save", str(saved))
    assert done.returncode == 0, done.stderr
    before = msgspec.json.decode(saved.read_bytes(), type=sidecar.bench.BenchResult)
    assert [v.name for v in before.variants] == ["nothing"]

    # Against a result ten times slower: faster now, no regression.
    slow = _scaled(saved, 10.0)
    done = sidecar_cli("bench", "pass", "-n", "5", "--name", "nothing", "--compare", str(slow))
    assert done.returncode == 0, done.stderr
    assert "median wall time against the previous result" in done.stdout
    assert "REGRESSION" not in done.stdout

    # Against one a hundred times faster: a regression, exit status 1.
    fast = _scaled(saved, 0.01)
    args = ["bench", "pass", "-n", "5", "--name", "nothing", "--compare", str(fast)]
    done = sidecar_cli(*args, "--threshold", "0.5")
    assert done.returncode == 1
    assert "REGRESSION" in done.stdout
    assert "slower than" in done.stderr
    assert "'nothing'" in done.stderr
    assert_no_kernels_left()


def test_compare_with_a_file_that_is_not_a_result_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"variants": 3}')
    done = sidecar_cli("bench", "pass", "--compare", str(bad))
    assert done.returncode == 2
    assert "not a result saved by --save" in done.stderr


def test_cli_pool_without_sampling() -> None:
    done = sidecar_cli(
        "bench", "pass", "-n", "2", "--pool-size", "1", "--sample-interval", "0", "--json"
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["pool_size"], data["reuse"], data["warmup"]) == (1, False, 0)
    assert (data["sample_interval"], data["timeline"]) == (None, [])
    [v] = data["variants"]
    assert len(set(v["pids"])) == 2
    assert v["wait"]["count"] == 2
