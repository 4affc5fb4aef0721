"""The command line as a user meets it: exit codes and what is printed."""

from __future__ import annotations

import base64
import concurrent.futures
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import nbformat
import pytest
import trio
from conftest import kernel_processes_of
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import sidecar
from sidecar.cli._main import _take_pairs, main
from sidecar.notebook._parameters import ParameterSource

pytestmark = pytest.mark.kernel


def sidecar_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_exec_prints_outputs(backend: str) -> None:
    done = sidecar_cli(
        "--backend",
        backend,
        "exec",
        "import sys; print('out'); print('err', file=sys.stderr); display('shown'); 6 * 7",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "out\n'shown'\n42\n"
    assert done.stderr == "err\n"


def test_exec_reads_code_from_stdin() -> None:
    done = sidecar_cli("exec", "-", stdin="print(sum(range(10)))\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "45\n"


def test_exec_error_exit_code_and_traceback() -> None:
    done = sidecar_cli("exec", "1 / 0")
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stderr


def test_exec_missing_kernel() -> None:
    done = sidecar_cli("exec", "--kernel", "no-such-kernel", "1")
    assert done.returncode == 1
    assert "no kernelspec named 'no-such-kernel'" in done.stderr
    assert "python3" in done.stderr


def test_exec_timeout() -> None:
    done = sidecar_cli("exec", "--timeout", "0.5", "import time; time.sleep(30)")
    assert done.returncode == 3
    assert "timed out" in done.stderr


def test_kernelspecs_lists_python3() -> None:
    done = sidecar_cli("kernelspecs")
    assert done.returncode == 0
    assert done.stdout.split()[0] == "python3"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_during_exec_shuts_the_kernel_down_even_when_repeated(
    tmp_path: Path, backend: str
) -> None:
    runtime = tmp_path / "runtime"
    code = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--backend", backend, "exec", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime)),
    )
    try:
        assert proc.stdout is not None
        kernel_pid = int(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        # A second signal during the cleanup must not cut it short.
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "sidecar: terminated" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(kernel_pid, 0)
    assert list(runtime.iterdir()) == []


# -- one rule for exit statuses; usage errors are one line, found before any kernel --------


def write(path: Path, *cells: Any, **metadata: Any) -> Path:
    nbformat.write(new_notebook(cells=list(cells), metadata=metadata), path)
    return path


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``sidecar ARGS`` in this process: exit status, stdout, stderr."""
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def assert_usage_error(status: int, err: str, message: str) -> None:
    assert status == 2
    assert err.startswith("sidecar: ")
    assert err.count("\n") == 1, err
    assert message in err


def test_a_missing_notebook_stops_the_batch_before_any_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = write(tmp_path / "ok.ipynb", new_code_cell("1"))
    slow = write(tmp_path / "slow.ipynb", new_code_cell("import time; time.sleep(30)"))
    status, _, err = run_main(
        capsys, "run", str(slow), str(tmp_path / "missing.ipynb"), str(ok), "-j", "3"
    )
    assert_usage_error(status, err, f"no such notebook: {tmp_path / 'missing.ipynb'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.ipynb", "slow.ipynb"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "{dir}"], "is a directory, not a notebook"),
        (["run", "{dir}/d1/x.ipynb", "{dir}/d2/x.ipynb", "-o", "{dir}/out"], "would both be"),
        (["run", "{nb}", "{nb}"], "is given twice"),
        (["run", "{nb}", "--inplace", "-o", "x.ipynb"], "--inplace and -o exclude each other"),
        (["run", "{nb}", "-o", "{dir}/no/such/out.ipynb"], "no such directory"),
        (["run", "{nb}", "--cwd", "{dir}/nowhere"], "--cwd"),
        (["run", "{nb}", "--timeout", "-1"], "argument --timeout: expected a number of seconds"),
        (["run", "{nb}", "--timeout", "0"], "argument --timeout: expected a number of seconds"),
        (["run", "{nb}", "--timeout", "nan"], "argument --timeout: expected a number of seconds"),
        (["run", "{nb}", "--start-timeout", "0"], "argument --start-timeout"),
        (["run", "{nb}", "--save-every", "-1"], "argument --save-every"),
        (["run", "{nb}", "-j", "0"], "argument -j/--jobs: expected a whole number >= 1"),
        (["run", "{nb}", "--reuse", "--pool-size", "0"], "--reuse needs the pool"),
        (["run", "{nb}", "--pool-size", "-1"], "argument --pool-size"),
        (["run", "{nb}", "-p", "x"], "-p needs a NAME and a VALUE"),
        (["run", "{nb}", "-p", "my-name", "1"], "a parameter name must be a Python name"),
        (["run", "{nb}", "-y", "[1, 2]"], "expected a YAML mapping"),
        (["run", "{nb}", "-f", "{dir}/none.yaml"], "cannot read it"),
        (["run", "{nb}", "--stdout-file", "{dir}/no/such/file"], "--stdout-file"),
        (["run", "{nb}", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["exec", "print(1)", "--timeout", "-1"], "argument --timeout"),
        (["bench", "pass", "--timeout", "0"], "argument --timeout"),
        (["bench", "pass", "-n", "0"], "argument -n"),
        (["bench", "--notebook", "{dir}/none.ipynb"], "no such notebook"),
        (["bench"], "bench needs code or --notebook"),
        (["params", "{dir}/none.ipynb"], "no such notebook"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    for d in ("d1", "d2"):
        write(tmp_path / d / "x.ipynb") if (tmp_path / d).mkdir() is None else None
    nb = write(tmp_path / "nb.ipynb", new_code_cell("1"))
    argv = [a.format(dir=tmp_path, nb=nb) for a in args]
    status, out, err = run_main(capsys, *argv)
    assert_usage_error(status, err, message)
    assert out == ""
    assert not list(tmp_path.glob("*.out.ipynb"))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(capsys, "--version")
    assert status == 0
    assert out.startswith(f"sidecar {sidecar.__version__} from ")


def test_minus_values_of_p_and_r_are_taken_as_papermill_takes_them() -> None:
    rest, pairs = _take_pairs(
        ["--backend", "trio", "run", "nb.ipynb", "-p", "x", "-inf", "-r", "s", "-x", "-q"]
    )
    assert rest == ["--backend", "trio", "run", "nb.ipynb", "-q"]
    assert pairs == [ParameterSource("-p", "-inf", "x"), ParameterSource("-r", "-x", "s")]
    # Only for run, and never after --.
    assert _take_pairs(["exec", "-p", "1", "2"]) == (["exec", "-p", "1", "2"], [])
    assert _take_pairs(["run", "--", "-p", "1", "2"]) == (["run", "--", "-p", "1", "2"], [])


def test_params_lists_what_the_parameters_cell_assigns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "p.ipynb",
        new_markdown_cell("# report"),
        new_code_cell(
            "alpha = 0.5  # learning rate\nname: str = 'x'\nseed = make()",
            metadata={"tags": ["parameters"]},
        ),
    )
    none = write(tmp_path / "none.ipynb", new_code_cell("1"))
    status, out, _ = run_main(capsys, "params", str(path), str(none))
    assert status == 0
    assert out == (
        f"{path}: parameters (cell 1):\n"
        "  alpha: float = 0.5  # learning rate\n"
        "  name: str = 'x'\n"
        "  seed = make()\n"
        "\n"
        f"{none}: no cell tagged 'parameters'\n"
    )
    # papermill's spelling does the same, and runs nothing.
    assert run_main(capsys, "run", str(path), "--help-notebook")[1] == out.split("\n\n")[0] + "\n"
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{")
    status, _, err = run_main(capsys, "params", str(broken))
    assert status == 1
    assert "not valid JSON" in err


def test_missing_python3_says_what_to_install() -> None:
    error = sidecar.NoSuchKernel("python3", [])
    assert str(error) == (
        "no kernelspec named 'python3' (found: none); install one with: "
        "pip install ipykernel (or pip install 'sidecar[ipykernel]')"
    )
    other = str(sidecar.NoSuchKernel("julia-1.10", ["python3"]))
    assert other.startswith("no kernelspec named 'julia-1.10' (found: python3); ")
    assert "jupyter kernelspec list" in other


@pytest.mark.parametrize(
    "args",
    [
        ["exec", "--kernel", "no-such-kernel", "1"],
        ["bench", "--kernel", "no-such-kernel", "pass", "-n", "1"],
        ["run", "--kernel", "no-such-kernel", "{nb}", "-q"],
    ],
)
def test_a_missing_kernel_is_exit_1_for_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    nb = write(tmp_path / "nb.ipynb", new_code_cell("1"))
    status, _, err = run_main(capsys, *(a.format(nb=nb) for a in args))
    assert status == 1
    assert "no kernelspec named 'no-such-kernel'" in err
    assert "Traceback" not in err


def test_bench_timeout_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_main(
        capsys, "bench", "import time; time.sleep(5)", "-n", "2", "--timeout", "0.5"
    )
    assert status == 3
    assert err == "sidecar: a run took longer than --timeout 0.5 s\n"


def test_run_timeout_is_exit_3_and_names_the_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sleeps = new_code_cell("import time; time.sleep(30)")
    path = write(tmp_path / "slow.ipynb", new_code_cell("x = 1"), sleeps)
    status, _, err = run_main(capsys, "run", str(path), "--timeout", "0.5")
    assert status == 3
    assert "cell 1 ran longer than its timeout (0.5 s) and was interrupted" in err
    assert "slow.ipynb: cell 1 running (code cell 2/2," in err


def test_several_notebooks_report_in_the_given_order_without_colours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write(tmp_path / "a" / "x.ipynb", new_code_cell("import time; time.sleep(1); 'first'"))
    failing = write(tmp_path / "b" / "x.ipynb", new_code_cell("def f():\n    1 / 0\nf()"))
    last = write(tmp_path / "last.ipynb", new_code_cell("'last'"))
    status, out, err = run_main(
        capsys, "run", str(first), str(failing), str(last), "-j", "3", "--show"
    )
    assert status == 1
    assert out == (
        f"==> {first} <==\n[1]\n'first'\n"
        f"==> {failing} <==\n[1]\n"
        + out.split(f"==> {failing} <==\n[1]\n")[1].split("==>")[0]
        + f"==> {last} <==\n[1]\n'last'\n"
    )
    assert "ZeroDivisionError" in out
    assert "\x1b[" not in err  # stderr is not a terminal: no colour codes
    assert f"{failing}: error\ncell 0 raised ZeroDivisionError: division by zero\n" in err
    # Progress names same-named notebooks apart.
    assert "a/x.ipynb: ok (1/1 cells" in err
    assert "b/x.ipynb: error (1/1 cells" in err
    table = err[err.index("notebook  ") :].splitlines()
    assert [row.split()[:3] for row in table[2:]] == [
        [str(first), "ok", "1/1"],
        [str(failing), "error", "1/1"],
        [str(last), "ok", "1/1"],
    ]


def test_report_mode_and_start_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "r.ipynb", new_code_cell("1"))
    # A trailing slash makes -o a directory, for one notebook too.
    status, _, err = run_main(capsys, "run", str(path), "--report-mode", "-q", "-o", "out/")
    assert status == 0, err
    written = json.loads((Path("out") / "r.ipynb").read_text())
    assert written["cells"][0]["metadata"]["jupyter"] == {"source_hidden": True}
    status, _, err = run_main(capsys, "run", str(path), "--start-timeout", "0.001", "-q")
    assert status == 1
    assert "r.ipynb: kernel" in err


def _injects_python_literals() -> bool:
    from sidecar.notebook._run import parameters_source

    return "float('-inf')" in parameters_source({"x": float("-inf")})


@pytest.mark.skipif(not _injects_python_literals(), reason="-inf is not injected as float('-inf')")
def test_parameters_from_every_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path / "p.ipynb",
        new_code_cell("x = 0.0\ny = 0\ns = ''\nz = None", metadata={"tags": ["parameters"]}),
        new_code_cell("print(repr((x, y, s, z)))"),
    )
    encoded = base64.b64encode(b"z: [1, true]").decode()
    status, out, err = run_main(
        capsys, "run", str(path), "-p", "x", "-inf", "-p", "y", "-3", "-r", "s", "-3",
        "-b", encoded, "--show", "-q",
    )  # fmt: skip
    assert status == 0, err
    assert "(-inf, -3, '-3', [1, True])" in out


def needs_hook(name: str) -> pytest.MarkDecorator:
    """For a test of an option built on a run_notebook keyword that may not exist yet."""
    missing = name not in inspect.signature(sidecar.run_notebook).parameters
    return pytest.mark.skipif(missing, reason=f"run_notebook has no {name}= yet")


@needs_hook("on_output")
def test_log_output_and_stream_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = "import sys\nprint('out 1')\nprint('err 1', file=sys.stderr)\ndisplay('shown')"
    one = write(tmp_path / "one.ipynb", new_code_cell(code))
    two = write(tmp_path / "two.ipynb", new_code_cell("print('two', end='')"))
    stdout_file, stderr_file = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    status, out, err = run_main(
        capsys, "run", str(one), "--log-output", "-q",
        "--stdout-file", str(stdout_file), "--stderr-file", str(stderr_file),
    )  # fmt: skip
    assert status == 0, err
    assert out == "out 1\n'shown'\n"
    assert err == "err 1\n"
    assert stdout_file.read_text() == "out 1\n"
    assert stderr_file.read_text() == "err 1\n"
    # Several notebooks: every line says whose it is.
    status, out, err = run_main(capsys, "run", str(one), str(two), "--log-output", "-q")
    assert status == 0, err
    assert out == "one.ipynb| out 1\none.ipynb| 'shown'\ntwo.ipynb| two\n"


@needs_hook("skip_tags")
def test_skip_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path / "t.ipynb",
        new_code_cell("print('kept')"),
        new_code_cell("print('slow')", metadata={"tags": ["slow"]}),
    )
    status, out, err = run_main(capsys, "run", str(path), "--skip-tag", "slow", "--show", "-q")
    assert status == 0, err
    assert out == "[1]\nkept\n"


# -- signals ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_signal_before_the_receiver_is_up_still_cancels_cleanly(
    backend: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT while the event loop's own (KeyboardInterrupt-protected) code
    runs, just before sidecar's signal receiver is installed: trio used to
    deliver it as a KeyboardInterrupt at the next checkpoint, deep inside the
    command's task groups, and the run ended in an ExceptionGroup traceback
    with exit status 1."""
    import sidecar.cli._main as cli

    real = anyio.open_signal_receiver

    @trio.lowlevel.enable_ki_protection
    def signal_first(*signals: int) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        return real(*signals)

    monkeypatch.setattr(cli.anyio, "open_signal_receiver", signal_first)
    started = time.monotonic()
    status, _, err = run_main(capsys, "--backend", backend, "exec", "print('never')")
    assert status == 130
    assert err == "sidecar: interrupted\n"
    assert time.monotonic() - started < 5


def test_a_signal_while_the_command_line_is_read(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window before any event loop: a KeyboardInterrupt traceback used to
    escape main() from argparse, and SIGTERM killed the process on the spot."""
    import sidecar.cli._main as cli

    real = cli._parser

    def signal_first() -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        return real()

    monkeypatch.setattr(cli, "_parser", signal_first)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    status, out, err = run_main(capsys, "exec", "print('never')")
    assert (status, out, err) == (130, "", "sidecar: interrupted\n")
    # main() leaves the handlers as it found them.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_run_as_the_program_a_late_ctrl_c_cannot_change_the_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once main() has its status, the interpreter's exit is no time for a
    Ctrl-C to kill the process with SIGINT (exit -2 after a successful run)."""
    monkeypatch.setattr(sys, "argv", ["sidecar", "--version"])
    before = signal.getsignal(signal.SIGINT)
    try:
        assert main() == 0
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    capsys.readouterr()


def test_a_signal_ignored_by_the_parent_stays_ignored() -> None:
    """A shell starts background jobs with SIGINT ignored: Ctrl-C at the
    terminal is not for them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "exec", "import time; time.sleep(1); print('done')"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (0, "done\n"), err


def _sigint_at(args: list[str], delay: float, env: dict[str, str]) -> tuple[int, str, float]:
    """``sidecar -v ARGS``, SIGINT ``delay`` s after main began: status, stderr, seconds to exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "-v", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # "sidecar.cli: sidecar VERSION: run on BACKEND"
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        return proc.returncode, first + stderr, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_at_any_moment_of_the_start_exits_130_without_a_traceback(
    tmp_path: Path, backend: str
) -> None:
    """Ctrl-C from the moment the command line is read, through the event
    loop's start, the kernel's launch and the first cell."""
    runtime = tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime))
    # The cell outlasts every delay: each SIGINT comes while sidecar works.
    path = write(tmp_path / "nb.ipynb", new_code_cell("import time; time.sleep(30)"))
    delays = [0.0, 0.01, 0.03, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9, 1.2, 1.6, 2.0]

    def one(i: int) -> tuple[float, int, str, float]:
        args = ["--backend", backend, "run", str(path), "-q", "-o", str(tmp_path / f"{i}.ipynb")]
        return (delays[i], *_sigint_at(args, delays[i], env))

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        tries = list(pool.map(one, range(len(delays))))
    for delay, status, stderr, _ in tries:
        assert status == 130, f"SIGINT after {delay} s: exit {status}\n{stderr}"
        assert "Traceback" not in stderr, f"SIGINT after {delay} s:\n{stderr}"
        assert "sidecar: interrupted" in stderr
    assert list(runtime.iterdir()) == []


def test_ctrl_c_while_the_kernel_starts_exits_promptly(tmp_path: Path) -> None:
    """It took 2.8 s: a kernel cancelled while starting was never asked to
    shut down, and was given grace / 2 to leave by itself before SIGTERM."""
    runtime = tmp_path / "runtime"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "exec", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime)),
    )
    try:
        deadline = time.monotonic() + 30
        while not kernel_processes_of(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert kernel_processes_of(proc.pid), "no kernel started"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert list(runtime.iterdir()) == []
    assert took < 1.5, f"{took:.2f} s from SIGINT to exit"


def test_ctrl_c_prints_the_summary_of_what_ran(tmp_path: Path) -> None:
    first = write(
        tmp_path / "first.ipynb",
        new_code_cell("print('ran', flush=True)"),
        new_code_cell("import time; time.sleep(60)"),
    )
    second = write(tmp_path / "second.ipynb", new_code_cell("1"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "run", str(first), str(second)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "code cell 2/2" in line:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    rows = [line.split() for line in stderr[stderr.index("notebook  ") :].splitlines()]
    assert rows[2][:3] == [str(first), "interrupted", "2/2"]
    # Its kernel had started ahead; its cells had not.
    assert rows[3] == [str(second), "not", "started", "0/1", "-"]
    assert rows[4] == ["sidecar:", "interrupted;", "what", "ran", "was", "written"]
