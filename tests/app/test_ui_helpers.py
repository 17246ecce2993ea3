"""The UI's one-of-each helpers: a point's label, the trained-on rule, a chart's selection event, checkpoint names."""

from types import SimpleNamespace

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer.ui import state


def test_label_names_the_class_and_marks_a_label_without_a_name():
    ctx = SimpleNamespace(map=SimpleNamespace(labels=np.array([0, 2, -1, 3]), class_names=["shirt", "bag", "boot"]))
    assert [state.label(ctx, i) for i in range(4)] == ["shirt", "boot", "?", "?"]


@pytest.mark.parametrize(
    ("meta", "named"),
    [
        ({"dataset": {"name": "digits"}}, "digits"),
        ({"dataset": {"name": "fashion-mnist"}}, "fashion-mnist"),
        ({"dataset": {"name": "unknown"}}, None),  # an import whose errors pointed nowhere
        ({"dataset": {"name": "⬆ mine.npz"}}, None),  # not a built-in dataset: nothing to open on
        ({"dataset": "digits"}, None),
        ({"dataset": {"name": 3}}, None),
        ({}, None),
    ],
)
def test_one_trained_on_rule(meta, named):
    assert state.dataset_of(meta) == named
    ref = state.CheckpointRef("x", None, "0" * 64, {"config": {}, **meta})
    assert ref.trained_on == named
    assert state.home_dataset(ref) == (named or state.FALLBACK_DATASET)


def _selection_script() -> None:
    import streamlit as st

    from explorer.ui import map_view

    st.session_state["chart"] = {"selection": {"points": [{"customdata": [4]}], "box": [], "lasso": []}}
    st.session_state["empty"] = {"selection": {}}
    st.write(repr(map_view.chart_selection("chart")))
    st.write(repr(map_view.chart_selection("empty")))
    st.write(repr(map_view.chart_selection("never drawn")))


def test_chart_selection_unwraps_the_event_or_says_none():
    at = AppTest.from_function(_selection_script).run()
    assert not at.exception, at.exception
    shown = [m.value for m in at.markdown]
    assert shown == [repr({"points": [{"customdata": [4]}], "box": [], "lasso": []}), "None", "None"]


def _names_script() -> None:
    import streamlit as st

    from explorer.ui import state

    names = state.checkpoint_names()
    first = state.find_checkpoint(names[0])
    st.write(f"first: {first is not None and first.name == names[0]}")
    st.write(f"unknown: {state.find_checkpoint('no such checkpoint')} {state.find_checkpoint(None)}")
    st.write(f"all: {list(state.checkpoints()) == names}")
    st.write(f"by digest: {state.checkpoint_by_digest(first.digest.upper())}")  # shipped files are not uploads
    held = state.CheckpointRef("⬆ mine", None, "ab" * 32, first.meta, b"bytes")
    state.uploads()[held.name] = held
    st.write(f"upload: {state.checkpoint_by_digest(' ' + 'AB' * 32).name} {state.find_checkpoint('⬆ mine').name}")
    st.write(f"last: {list(state.checkpoints())[-1]}; shipped only: {'⬆ mine' in state.checkpoints(shipped_only=True)}")


def test_every_checkpoint_name_resolves_in_one_place():
    at = AppTest.from_function(_names_script).run()
    assert not at.exception, at.exception
    assert [m.value for m in at.markdown] == [
        "first: True",
        "unknown: None None",
        "all: True",
        "by digest: None",
        "upload: ⬆ mine ⬆ mine",
        "last: ⬆ mine; shipped only: False",
    ]
    with pytest.raises(KeyError):
        state.checkpoint("no such checkpoint")  # outside a session: no uploads, no shipped file of that name
