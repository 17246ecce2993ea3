"""What the AppTest files do again and again: run one page of the app, read its Plotly figures, check that
it shows no exception or error. Imported by name (tests/app is on the path); fixtures are in conftest.py."""

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest


def page_app(module: str, view: str, timeout: float = 180) -> AppTest:
    """The page script that draws ``explorer.ui.<module>.<view>()`` alone (not yet run)."""
    return AppTest.from_string(f"from explorer.ui import {module}\n{module}.{view}()\n", default_timeout=timeout)


def upload_app(path: Path, view: str = "decode_view", name: str | None = None) -> AppTest:
    """A session that uploads the checkpoint at ``path`` (as ``name``, its file name unless told) on its first
    run, maps 1,000 images with it and draws ``views.<view>()``; a refused file shows "Refused: ..."."""
    script = f"""
from pathlib import Path
import streamlit as st
from explorer.errors import ExplorerError
from explorer.ui import state, views
if "uploaded" not in st.session_state:
    st.session_state["uploaded"] = True
    try:
        ref = state.add_upload([({name or path.name!r}, Path({str(path)!r}).read_bytes())], {{}})
        st.session_state["ckpt"] = ref.name
        st.session_state["n"] = 1000
    except ExplorerError as exc:
        st.error(f"Refused: {{exc}}")
views.{view}()
"""
    return AppTest.from_string(script, default_timeout=240)


def plotly_array(value) -> np.ndarray:
    """A Plotly array from a figure's JSON: a list, or a typed array ({"dtype", "bdata"} in base64)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def specs(at: AppTest) -> list[dict]:
    """Every Plotly figure on the page, as its JSON, in page order."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def assert_clean(at: AppTest) -> None:
    """No exception and no error message: pages turn their errors into st.error, so both are checked."""
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
