"""Every code example in the docs runs, so the docs cannot rot.

The fenced code blocks of ``README.md`` and ``docs/**/*.md`` are collected and
each one becomes a test:

- A ``python`` block runs.  One that starts an event loop (``anyio.run``,
  ``trio.run``, ``asyncio.run``) needs a kernel: it runs as a script in its
  own process, in a scratch directory, with a timeout.  Any other block runs
  in this process, in a scratch directory.
- An ``sh`` block runs in bash, in a scratch directory holding a copy of
  ``examples/``, with ``sidecar`` and ``python`` meaning this interpreter's.
  Its commands must be ``sidecar ...`` commands; ``python -m pip install ...``
  (the tests run with the project installed) and the commands that run this
  test suite (``python -m pytest``, ``nox``) are recognised and not run.
- A ``text`` block titled ``Output`` (```` ```text title="Output" ````) that
  follows a ``python`` or ``sh`` block is what that block must print on
  stdout; ``...`` matches anything, as in doctest.
- A ``text`` block titled with a help command (``title="sidecar run --help"``)
  must be exactly what that command prints.
- A block preceded by ``<!-- docs-test: skip REASON -->`` is not run; the
  reason is required.  Keep these rare.
- README.md's first command, the one a newcomer copies, also runs verbatim,
  install included, in a fresh virtualenv (slow: minutes).  ``.ci/run`` runs
  it that way itself and tells this test so, to do it once.

The example scripts start in parallel (a few at a time) when the first of them
is needed, so the whole file takes seconds, not minutes.
"""

from __future__ import annotations

import concurrent.futures
import doctest
import importlib
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SOURCES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
SCRIPT_TIMEOUT = 45.0
VENV_TIMEOUT = 600.0
PARALLEL = 3
HELP_COLUMNS = "80"

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<lang>[\w-]*)(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)"
    r"^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_TITLE = re.compile(r'title="(?P<title>[^"]*)"')
_SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b(?P<reason>[^>]*?)-->\s*$")
_EVENT_LOOP = re.compile(r"\b(anyio|trio|asyncio)\.run\(")
_PIP_INSTALL = re.compile(r"^python -m pip install [^&]*(&&\s*|$)")
_TEST_SUITE = re.compile(r"^(python -m pytest|pytest|nox)\b")


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int
    lang: str
    title: str
    code: str
    skip: str | None = None
    expected: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_script(self) -> bool:
        return self.lang == "sh" or bool(_EVENT_LOOP.search(self.code))


def _blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        title = _TITLE.search(match["info"])
        found.append(
            Block(
                path=path,
                line=line,
                lang=match["lang"],
                title=title["title"] if title else "",
                code=textwrap.dedent(match["body"]),
                skip=skip["reason"].strip(" :") if skip else None,
            )
        )
    # An Output block belongs to the runnable block just before it.
    for previous, block in itertools.pairwise(found):
        if block.lang == "text" and block.title == "Output" and previous.lang in ("python", "sh"):
            previous.expected = block.code
    return found


ALL_BLOCKS = [block for path in SOURCES for block in _blocks(path)]
RUNNABLE = [b for b in ALL_BLOCKS if b.lang in ("python", "sh")]
HELP = [b for b in ALL_BLOCKS if b.lang == "text" and b.title.endswith("--help")]


# -- running ------------------------------------------------------------------------


def _shell_commands(block: Block) -> list[str]:
    """The block's commands that the test runs."""
    kept = []
    for raw in block.code.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = _PIP_INSTALL.sub("", line).strip()
        if not line or _TEST_SUITE.match(line):
            continue
        if not line.startswith(("sidecar ", "papermill ")):
            raise AssertionError(
                f"{block.id}: the docs tests run only `sidecar` and `papermill` commands "
                "in sh blocks, "
                f"not {line!r}; teach tests/test_docs.py, or mark the block "
                "<!-- docs-test: skip REASON -->"
            )
        kept.append(line)
    return kept


def _scratch_dir() -> Path:
    """A fresh directory with a copy of examples/, for one script."""
    scratch = Path(tempfile.mkdtemp(prefix="sidecar-docs-"))
    shutil.copytree(
        ROOT / "examples", scratch / "examples", ignore=shutil.ignore_patterns("*.out.ipynb")
    )
    return scratch


def _bin_dir() -> Path:
    """``python``, ``sidecar`` and ``papermill`` commands that mean this interpreter's."""
    bin_dir = Path(tempfile.mkdtemp(prefix="sidecar-docs-bin-"))
    for name, command in (
        ("python", ""),
        ("sidecar", " -m sidecar"),
        ("papermill", " -m papermill"),
    ):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)}{command} "$@"\n')
        shim.chmod(0o755)
    return bin_dir


@dataclass
class Ran:
    """What running a block did: its process, and the files it left behind."""

    done: subprocess.CompletedProcess[str]
    left: list[str]


def _files_left(scratch: Path, before: set[Path]) -> list[str]:
    return sorted(
        str(path.relative_to(scratch))
        for path in scratch.rglob("*")
        if path.is_file() and path not in before
    )


def _run_script(block: Block, bin_dir: Path) -> Ran:
    scratch = _scratch_dir()
    try:
        if block.lang == "sh":
            argv = ["bash", "-c", "set -e\n" + "\n".join(_shell_commands(block))]
        else:
            script = scratch / "example.py"
            script.write_text(block.code, encoding="utf-8")
            argv = [sys.executable, str(script)]
        before = set(scratch.rglob("*"))
        env = dict(os.environ)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        # A new session: no controlling terminal (getpass reads stdin, never
        # /dev/tty), and a timeout can kill the whole process group.
        process = subprocess.Popen(
            argv,
            cwd=scratch,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate("Ada\nsecret\n", timeout=SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            stderr += f"\n[killed after {SCRIPT_TIMEOUT} s]"
            return Ran(subprocess.CompletedProcess(argv, -9, stdout, stderr), [])
        done = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
        return Ran(done, _files_left(scratch, before))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def scripts(request: pytest.FixtureRequest) -> Iterator[dict[str, concurrent.futures.Future[Ran]]]:
    """Start every selected example script, a few at a time; their futures by block id."""
    selected = {
        item.callspec.params["block"].id
        for item in request.session.items
        if item.module is sys.modules[__name__] and hasattr(item, "callspec")
        if isinstance(item.callspec.params.get("block"), Block)
    }
    bin_dir = _bin_dir()
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        futures = {
            block.id: pool.submit(_run_script, block, bin_dir)
            for block in RUNNABLE
            if block.id in selected and block.is_script and block.skip is None
            if block.lang != "sh" or _shell_commands(block)
        }
        yield futures
        for future in futures.values():
            future.cancel()
    shutil.rmtree(bin_dir, ignore_errors=True)


def _rstrip_lines(text: str) -> str:
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def _check_output(block: Block, stdout: str) -> None:
    """Compare as doctest does (``...`` matches anything), trailing spaces aside."""
    if block.expected is None:
        return
    want, got = _rstrip_lines(block.expected), _rstrip_lines(stdout)
    checker = doctest.OutputChecker()
    if not checker.check_output(want, got, doctest.ELLIPSIS):
        example = doctest.Example(block.code, want)
        pytest.fail(
            f"{block.id}: the output differs from the docs\n"
            + checker.output_difference(example, got, doctest.ELLIPSIS)
        )


# -- the tests ----------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_example_runs(
    block: Block,
    scripts: dict[str, concurrent.futures.Future[Ran]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if block.skip is not None:
        assert block.skip, f"{block.id}: say why the block is skipped"
        pytest.skip(f"marked in the docs: {block.skip}")
    if block.lang == "sh" and not _shell_commands(block):
        pytest.skip("only installs the project or runs the test suite")
    if block.is_script:
        ran = scripts[block.id].result()
        done = ran.done
        assert done.returncode == 0, (
            f"{block.id} failed (exit {done.returncode})\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
        )
        _check_output(block, done.stdout)
        _check_ignored(block, ran.left)
        return
    monkeypatch.chdir(tmp_path)
    exec(compile(block.code, block.id, "exec"), {"__name__": "__main__"})
    _check_output(block, capsys.readouterr().out)
    _check_ignored(block, _files_left(tmp_path, set()))


def _check_ignored(block: Block, left: list[str]) -> None:
    """What an example leaves, run from the repository's root, git ignores."""
    if not left or shutil.which("git") is None or not (ROOT / ".git").exists():
        return
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(left),
        capture_output=True,
        text=True,
        check=False,
    )
    ignored = set(checked.stdout.splitlines())
    kept = [path for path in left if path not in ignored]
    assert not kept, f"{block.id} leaves files .gitignore does not cover: {kept}"


@pytest.mark.parametrize("block", HELP, ids=[b.id for b in HELP])
def test_cli_help_is_current(block: Block) -> None:
    args = shlex.split(block.title)
    assert args[0] == "sidecar", block.title
    env = dict(os.environ, COLUMNS=HELP_COLUMNS)
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", *args[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    actual = "\n".join(line.rstrip() for line in done.stdout.strip().splitlines())
    documented = "\n".join(line.rstrip() for line in block.code.strip().splitlines())
    assert documented == actual, f"{block.id}: update the docs to what `{block.title}` prints"


def _documented_members(namespace: str) -> list[str]:
    """The names of ``namespace`` that the API reference pages render (``::: sidecar.NAME``)."""
    directive = re.compile(rf"^::: {re.escape(namespace)}\.(\w+)$", re.MULTILINE)
    names = []
    for page in sorted((DOCS / "reference").glob("*.md")):
        names += directive.findall(page.read_text(encoding="utf-8"))
    return names


@pytest.mark.parametrize("namespace", ["sidecar", "sidecar.wire", "sidecar.bench"])
def test_api_reference_covers_every_public_name(namespace: str) -> None:
    module = importlib.import_module(namespace)
    documented = [
        name
        for name in _documented_members(namespace)
        if not isinstance(getattr(module, name, None), types.ModuleType)
    ]
    repeated = sorted({name for name in documented if documented.count(name) > 1})
    assert not repeated, f"documented twice: {repeated}"
    assert sorted(documented) == sorted(module.__all__)


README_COMMANDS = [b.code.strip() for b in _blocks(ROOT / "README.md") if b.lang == "sh"]


def test_readme_commands_are_what_ci_runs() -> None:
    """.ci/run runs README's first two sh blocks: the first command, then the tests."""
    first, tests = README_COMMANDS[:2]
    assert first.startswith("python -m pip install -e '.[ipykernel]' && ")
    assert first.endswith("sidecar run examples/tour.ipynb --show")
    assert tests.endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "readme_command 1" in ci
    assert "readme_command 2" in ci


@pytest.mark.kernel
@pytest.mark.timeout(VENV_TIMEOUT + 60)
def test_readme_first_command_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    if os.environ.get("SIDECAR_README_FIRST_COMMAND_CHECKED"):
        pytest.skip(".ci/run ran it in a fresh virtualenv of its own")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # A copy of the project: the command writes examples/tour.out.ipynb.
    project = tmp_path / "sidecar"
    shutil.copytree(
        ROOT,
        project,
        ignore=shutil.ignore_patterns(
            ".git", ".nox", ".venv", ".ci", "build", "dist", "*.out.ipynb", "__pycache__"
        ),
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def bash(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=VENV_TIMEOUT,
        )

    upgraded = bash("python -m pip install -q --upgrade pip")
    if upgraded.returncode != 0:
        pytest.skip(f"no package index to install from:\n{upgraded.stderr[-2000:]}")
    done = bash(README_COMMANDS[0])
    assert done.returncode == 0, f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    assert "hello, world (2/2)\n" in done.stdout
    assert "still running after the expected error\n" in done.stdout


def test_every_block_has_a_language() -> None:
    unlabelled = [b.id for b in ALL_BLOCKS if not b.lang]
    assert not unlabelled, f"fenced blocks without a language: {unlabelled}"


def test_skips_are_rare() -> None:
    skipped = [b.id for b in RUNNABLE if b.skip is not None]
    assert len(skipped) <= 3, f"too many examples skipped: {skipped}"
