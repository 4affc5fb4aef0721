"""Developer tasks.  ``nox -l`` lists them; CI runs ``.ci/run`` (the README's two commands)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = ["3.11"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite, on asyncio and trio, against real ipykernel processes."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (with the papermill extra: the engine imports it)."""
    session.install(
        "-e", ".[papermill]", "mypy", "types-PyYAML", "types-tqdm", "pyflakes", "types-pyflakes"
    )
    session.run("mypy", "--strict", "sidecar")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Every benchmark, one table each, peers side by side as ratios from one run.

    Writes the results to build/benchmarks.json and the chart of docs/benchmarks.md
    to docs/images/benchmarks.png; ``nox -s bench -- --quick`` is a smoke run, charted
    into build/.
    """
    session.install("-e", ".[bench]")
    # A smoke run must not overwrite the chart the docs show.
    chart = "build/benchmarks.png" if "--quick" in session.posargs else "docs/images/benchmarks.png"
    session.run(
        "python",
        "-m",
        "benchmarks",
        *("--save", "build/benchmarks.json", "--chart", chart),
        *session.posargs,
    )


@nox.session(python=PYTHON)
def stress(session: nox.Session) -> None:
    """The stress suite at full size, on asyncio and trio: faults, a fuzzing peer, cycles, soaks.

    Writes the figures to build/stress.json and prints them as tables
    (docs/reliability.md records one run).  The same suite runs in its short
    size with the tests; ``SIDECAR_STRESS_SEED`` replays a fuzzing run.
    """
    session.install("-e", ".[test]", "pytest-xdist")
    figures = Path("build/stress.json")
    figures.unlink(missing_ok=True)
    env = {"SIDECAR_STRESS": "full", "SIDECAR_STRESS_FIGURES": str(figures)}
    pytest = ("python", "-m", "pytest", "tests/stress", "-p", "no:cacheprovider")
    session.run(*pytest, "-k", "not soak", *session.posargs, env=env)
    # The soaks are bound by the kernels' CPU: the two backends run at once,
    # in a process each, each measuring its own memory.
    session.run(*pytest, "-k", "soak", "-n", "2", *session.posargs, env=env)
    session.run("python", "tests/stress/figures.py", str(figures))


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site into build/site, warnings as errors.

    The code examples in the docs are run by the tests (tests/test_docs.py).
    """
    session.install("-e", ".[docs]")
    # Material for MkDocs prints a notice about MkDocs 2 on every build.
    env = {"NO_MKDOCS_2_WARNING": "1"}
    session.run("mkdocs", "build", "--strict", *session.posargs, env=env)
