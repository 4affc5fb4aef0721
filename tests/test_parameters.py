"""Parameters as papermill takes them on the command line, and as a notebook declares them."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import pytest

from sidecar import new_code_cell, new_markdown_cell, new_notebook
from sidecar.notebook._parameters import (
    ParameterError,
    ParameterSource,
    collect_parameters,
    declared_parameters,
    value_of,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # papermill's _resolve_type, case by case
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", "true"),
        ("null", "null"),
        ("none", "none"),
        ("12", 12),
        ("-3", -3),
        ("1_000", 1000),
        (" 7 ", 7),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("-0.25", -0.25),
        ("0x10", "0x10"),
        ("", ""),
        ("hello world", "hello world"),
        ("'quoted'", "'quoted'"),
    ],
)
def test_value_of_infers_as_papermill(text: str, expected: Any) -> None:
    value = value_of(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("text", "sign"), [("inf", 1), ("-inf", -1), ("Infinity", 1)])
def test_value_of_infinities(text: str, sign: int) -> None:
    value = value_of(text)
    assert isinstance(value, float)
    assert math.isinf(value)
    assert math.copysign(1, value) == sign


def test_value_of_nan() -> None:
    value = value_of("nan")
    assert isinstance(value, float)
    assert math.isnan(value)


def test_later_options_win_in_papermills_order(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("a: from-file\nb: from-file\nc: from-file\nd: from-file\n")
    encoded = base64.b64encode(b"a: from-base64\nb: from-base64\ne: [1, 2]").decode()
    given = [
        # command-line order deliberately the reverse of papermill's
        ParameterSource("-r", "from-raw", "d"),
        ParameterSource("-p", "3", "c"),
        ParameterSource("-y", "{b: from-yaml, c: from-yaml}"),
        ParameterSource("-f", str(params)),
        ParameterSource("-b", encoded),
    ]
    assert collect_parameters(given) == {
        "a": "from-file",
        "b": "from-yaml",
        "c": 3,
        "d": "from-raw",
        "e": [1, 2],
    }


def test_yaml_keeps_dates_as_text_and_reads_its_own_types() -> None:
    found = collect_parameters([ParameterSource("-y", "when: 2024-05-01\nflag: true\nnone: null")])
    assert found == {"when": "2024-05-01", "flag": True, "none": None}


def test_raw_parameter_is_text() -> None:
    assert collect_parameters([ParameterSource("-r", "12", "n")]) == {"n": "12"}


def test_empty_yaml_adds_nothing() -> None:
    assert collect_parameters([ParameterSource("-y", "")]) == {}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (ParameterSource("-p", "1", "my-name"), "-p 'my-name': a parameter name must be"),
        (ParameterSource("-r", "1", "class"), "-r 'class': a parameter name must be"),
        (ParameterSource("-y", "[1, 2]"), "expected a YAML mapping of names to values, got list"),
        (ParameterSource("-y", "a: [1"), "not YAML"),
        (ParameterSource("-b", "not base64!"), "not base64"),
        (ParameterSource("-f", "/no/such/params.yaml"), "-f /no/such/params.yaml: cannot read it"),
    ],
)
def test_bad_parameters_are_named(source: ParameterSource, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        collect_parameters([source])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_declared_parameters_names_types_defaults_and_help() -> None:
    source = "\n".join(
        [
            "# Parameters of the report",
            "%matplotlib inline",
            "alpha = 0.5  # learning rate",
            "epochs: int = 10",
            "name = 'run'",
            "labels = [",
            "    'a',",
            "    'b',",
            "]  # the classes",
            "when = None  # type: str | None",
            "seed = compute_seed()",
            "a, b = 1, 2",
            "print(alpha)",
        ]
    )
    notebook = new_notebook(
        cells=[
            new_markdown_cell("# title"),
            new_code_cell(source, metadata={"tags": ["parameters"]}),
            new_code_cell("late = 1", metadata={"tags": ["parameters"]}),
        ]
    )
    declared = declared_parameters(notebook)
    assert declared is not None
    assert declared.cell_index == 1
    assert declared.readable
    found = [(p.name, p.type, p.default, p.help) for p in declared.parameters]
    assert found == [
        ("alpha", "float", "0.5", "learning rate"),
        ("epochs", "int", "10", ""),
        ("name", "str", "'run'", ""),
        ("labels", "list", "[ 'a', 'b', ]", "the classes"),
        ("when", "str | None", "None", ""),
        ("seed", "", "compute_seed()", ""),
    ]


def test_no_parameters_cell() -> None:
    assert declared_parameters(new_notebook(cells=[new_code_cell("x = 1")])) is None


def test_a_parameters_cell_that_is_not_python() -> None:
    notebook = new_notebook(cells=[new_code_cell("x::Int = 1", metadata={"tags": ["parameters"]})])
    declared = declared_parameters(notebook)
    assert declared is not None
    assert not declared.readable
    assert declared.parameters == []
