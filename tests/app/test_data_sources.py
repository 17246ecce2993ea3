"""The host's own datasets (EXPLORER_DATA) in the sidebar: listed beside the built-in sets, mapped when chosen,
and a folder's broken files skipped with one warning while the good images are mapped."""

import io
import json

import numpy as np
import pytest
from apptests import page_app, plotly_array
from PIL import Image

from explorer.data import forget_configured
from explorer.maps.selection import Picked

GOOD = 40


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def myfolder(tmp_path, monkeypatch):
    """Two class folders of 32x32 grey images (the model takes 28x28), a truncated PNG and a text file named .jpg."""
    rng = np.random.default_rng(0)
    root = tmp_path / "myfolder"
    for k in range(GOOD):
        folder = root / ("circles" if k % 2 else "squares")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{k:03d}.png").write_bytes(png(rng.integers(0, 256, (32, 32), dtype=np.uint8)))
    (root / "squares" / "broken.png").write_bytes(png(np.zeros((32, 32), np.uint8))[:50])
    (root / "circles" / "notes.jpg").write_text("not an image")
    monkeypatch.setenv("EXPLORER_DATA", f"myfolder={root}")
    forget_configured()
    yield root
    forget_configured()


def test_a_folder_of_the_hosts_is_listed_and_mapped_with_its_broken_files_reported(myfolder):
    at = page_app("views", "decode_view")
    at.session_state["ds"] = "myfolder"
    at.session_state["proj"] = "PCA 2-D"  # no layout to fit: the test is about the data
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    box = at.sidebar.selectbox(key="ds")
    assert "myfolder" in box.options and "fashion-mnist" in box.options and box.value == "myfolder"
    (warning,) = [w.value for w in at.warning if "skipped" in w.value]
    assert warning.startswith("myfolder: 2 of 42 images skipped") and "broken.png" in warning
    (chart,) = at.get("plotly_chart")
    traces = json.loads(chart.proto.spec)["data"]
    ids = np.sort(np.concatenate([plotly_array(t["customdata"]).ravel() for t in traces if "customdata" in t]))
    assert np.array_equal(ids, np.arange(GOOD))
    assert f"{GOOD:,} images of myfolder" in " ".join(c.value for c in at.sidebar.caption)
    # a selection on that map shows its images and their reconstructions, as on any map
    at.session_state["pick"] = Picked((3, 10, 39), None)
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert "3 selected" in " ".join(m.value for m in at.markdown)
