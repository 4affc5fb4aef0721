"""The Outputs collector on its own, message by message, with nbformat as the oracle
for what a notebook may hold (kernel runs are in test_document.py)."""

from __future__ import annotations

from typing import Any

import nbformat
import pytest
from hypothesis import given, strategies as st

from sidecar import Outputs
from sidecar.client._outputs import INVALID_OUTPUT, output_problem
from sidecar.wire import (
    ClearOutput,
    DisplayData,
    ExecuteInput,
    ExecuteReply,
    ExecuteResult,
    Message,
    Session,
    UpdateDisplayData,
)

SESSION = Session()


def msg(msg_type: str, content: Any) -> Message:
    return SESSION.message(msg_type, content)


def display(text: Any, display_id: str | None = None, **metadata: Any) -> Message:
    transient = {"display_id": display_id} if display_id else {}
    data = text if isinstance(text, dict) else {"text/plain": text}
    return msg("display_data", DisplayData(data=data, metadata=metadata, transient=transient))


def update(text: Any, display_id: str) -> Message:
    data = text if isinstance(text, dict) else {"text/plain": text}
    content = UpdateDisplayData(data=data, metadata={}, transient={"display_id": display_id})
    return msg("update_display_data", content)


def result(text: str, count: int | None, display_id: str | None = None) -> Message:
    transient = {"display_id": display_id} if display_id else {}
    content = ExecuteResult(
        execution_count=count, data={"text/plain": text}, metadata={}, transient=transient
    )
    return msg("execute_result", content)


def feed(collector: Outputs, *messages: Message) -> Outputs:
    for message in messages:
        getattr(collector, f"on_{message.msg_type}")(message)
    return collector


def texts(collector: Outputs) -> list[str]:
    return [o["data"]["text/plain"] for o in collector.outputs if "data" in o]


def notebook_of(*collectors: Outputs) -> dict[str, Any]:
    cells = [
        {
            "cell_type": "code",
            "id": f"cell{i}",
            "execution_count": c.execution_count,
            "metadata": {},
            "outputs": c.outputs,
            "source": "",
        }
        for i, c in enumerate(collectors)
    ]
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}


def assert_valid(*collectors: Outputs) -> None:
    nbformat.validate(nbformat.from_dict(notebook_of(*collectors)))


def nbformat_accepts(output: dict[str, Any]) -> bool:
    collector = Outputs()
    collector.outputs.append(output)
    try:
        assert_valid(collector)
    except nbformat.ValidationError:
        return False
    return True


# -- display ids across collectors ---------------------------------------------------------


def test_a_display_with_a_shown_id_updates_every_earlier_output() -> None:
    """As nbclient's _update_display_id: display_data and execute_result with an id
    already shown update all outputs showing it, whichever collector holds them."""
    displays: dict[str, list[dict[str, Any]]] = {}
    first, second, third = Outputs(displays), Outputs(displays), Outputs(displays)
    feed(first, display("foo", "d"), display("unrelated"))
    feed(second, display("bar", "d"))
    assert texts(first) == ["bar", "unrelated"]
    feed(third, result("baz", 3, "d"))
    assert texts(first) == ["baz", "unrelated"]
    assert texts(second) == ["baz"]
    assert texts(third) == ["baz"]
    assert third.outputs[0]["execution_count"] == 3
    feed(third, update("final", "d"))
    assert [texts(c) for c in (first, second, third)] == [
        ["final", "unrelated"],
        ["final"],
        ["final"],
    ]
    # Each output owns its data: changing one does not change another.
    first.outputs[0]["data"]["text/plain"] = "mine"
    assert texts(second) == ["final"]
    assert_valid(first, second, third)


def test_update_changes_data_in_place() -> None:
    """Whoever holds an output's data dict sees the update (the document relies on it)."""
    collector = feed(Outputs(), display("a", "d", k=1))
    data, metadata = collector.outputs[0]["data"], collector.outputs[0]["metadata"]
    feed(collector, update("b", "d"))
    assert data == {"text/plain": "b"}
    assert metadata == {}
    feed(collector, display("c", "d", k=2))
    assert data == {"text/plain": "c"}
    assert metadata == {"k": 2}


def test_clearing_forgets_outputs_by_identity() -> None:
    """Clearing one cell's outputs leaves an *equal* output of another cell mapped."""
    displays: dict[str, list[dict[str, Any]]] = {}
    first, second = Outputs(displays), Outputs(displays)
    feed(first, display("same", "d"))
    feed(second, display("same", "d"))
    second.clear()
    assert displays["d"] == first.outputs
    feed(second, update("updated", "d"))
    assert texts(first) == ["updated"]
    first.clear()
    assert displays == {}  # no empty lists left behind in a long-lived map


def test_clear_output_wait_then_a_display_with_the_same_id() -> None:
    displays: dict[str, list[dict[str, Any]]] = {}
    earlier, current = Outputs(displays), Outputs(displays)
    feed(earlier, display("one", "d"))
    feed(current, display("two", "d"), msg("clear_output", ClearOutput(wait=True)))
    feed(current, display("three", "d"))
    assert texts(earlier) == ["three"]
    assert texts(current) == ["three"]
    assert len(displays["d"]) == 2
    feed(current, update("four", "d"))
    assert texts(earlier) == ["four"]
    assert texts(current) == ["four"]


# -- outputs nbformat rejects -----------------------------------------------------------------

INVALID_BUNDLES = [
    pytest.param({"a": 1}, {}, "data['a'] is a number", id="raw-dict-display"),
    pytest.param({"text/html": {"x": 1}}, {}, "data['text/html'] is an object", id="object-html"),
    pytest.param({"image/png": None}, {}, "data['image/png'] is null", id="null-png"),
    pytest.param({"text/plain": ["a", 1]}, {}, "is an array", id="mixed-lines"),
    pytest.param({"text/plain": True}, {}, "is a boolean", id="bool"),
    pytest.param(["text/plain"], {}, "data is an array, not an object", id="data-array"),
    pytest.param({"text/plain": "x"}, [1], "metadata is an array, not an object", id="metadata"),
    pytest.param({"text/plain": "x"}, "m", "metadata is a str, not an object", id="metadata-str"),
]


@pytest.mark.parametrize(("data", "metadata", "problem"), INVALID_BUNDLES)
def test_an_output_nbformat_rejects_becomes_an_error_output(
    data: Any, metadata: Any, problem: str
) -> None:
    assert not nbformat_accepts({"output_type": "display_data", "data": data, "metadata": metadata})
    displays: dict[str, list[dict[str, Any]]] = {}
    earlier = feed(Outputs(displays), display("shown", "d"))
    collector = Outputs(displays)
    for message in (
        msg(
            "display_data", DisplayData(data=data, metadata=metadata, transient={"display_id": "d"})
        ),
        msg("execute_result", ExecuteResult(execution_count=2, data=data, metadata=metadata)),
        msg(
            "update_display_data",
            UpdateDisplayData(data=data, metadata=metadata, transient={"display_id": "d"}),
        ),
    ):
        feed(collector, message)
    kinds = ["display_data", "execute_result", "update_display_data"]
    assert [o["output_type"] for o in collector.outputs] == ["error"] * 3
    assert [o["ename"] for o in collector.outputs] == [INVALID_OUTPUT] * 3
    for output, kind in zip(collector.outputs, kinds, strict=True):
        assert output["evalue"].startswith(f"{kind} message not valid in a notebook: ")
        assert problem in output["evalue"]
        assert output["traceback"] == [f"{INVALID_OUTPUT}: {output['evalue']}"]
    assert collector.rejected == [o["evalue"] for o in collector.outputs]
    # The rejected displays and update changed nothing already shown.
    assert texts(earlier) == ["shown"]
    assert displays == {"d": earlier.outputs}
    assert_valid(earlier, collector)


def test_execution_counts_nbformat_rejects_are_dropped() -> None:
    """The schema wants counts >= 0 (or null): a negative one is not a count."""
    collector = feed(
        Outputs(),
        msg("execute_input", ExecuteInput(code="", execution_count=-1)),
        result("x", -5),
        msg("execute_reply", ExecuteReply(execution_count=-1)),
    )
    assert collector.execution_count is None
    assert collector.outputs[0]["execution_count"] is None
    assert_valid(collector)


# nbformat's own validator decides: output_problem says None exactly when it accepts.
MIMETYPES = st.sampled_from(
    [
        "text/plain",
        "text/html",
        "image/png",
        "application/json",
        "application/vnd.custom+json",
        "application/javascript",
        "application/jsonx",
        "a",
        "",
    ]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=6,
)
VALUES = st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=3) | JSON_VALUES
BUNDLES = st.dictionaries(MIMETYPES, VALUES, max_size=3) | JSON_VALUES


@given(data=BUNDLES, metadata=st.dictionaries(st.text(max_size=3), JSON_VALUES) | JSON_VALUES)
def test_output_problem_agrees_with_nbformat(data: Any, metadata: Any) -> None:
    output = {"output_type": "display_data", "data": data, "metadata": metadata}
    assert (output_problem(data, metadata) is None) == nbformat_accepts(output)
