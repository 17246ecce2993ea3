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


def _latents_file(tmp_path, monkeypatch, root, **entry) -> None:
    """The folder again, now from a data file naming latents computed elsewhere for it."""
    lines = ["[data.myfolder]", f'path = "{root}"', *(f'{k} = "{v}"' for k, v in entry.items())]
    (tmp_path / "data.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.delenv("EXPLORER_DATA")
    monkeypatch.setenv("EXPLORER_DATA_FILE", str(tmp_path / "data.toml"))
    forget_configured()


def _map_of(at):
    return at.session_state["map:shown"][0].map


def test_latents_another_program_wrote_are_mapped_instead_of_encoding(myfolder, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from explorer.data import open_source

    n = len(open_source("myfolder", str(myfolder)))  # every file the folder lists, the broken ones too
    rows = np.random.default_rng(1).normal(size=(n, 16)).astype(np.float32)  # nothing the VAE would make
    order = np.arange(n)[::-1]
    flat = pa.array(rows[order].ravel())
    offsets = pa.array(np.arange(0, rows.size + 1, 16, dtype=np.int32))
    pq.write_table(pa.table({"i": order, "emb": pa.ListArray.from_arrays(offsets, flat)}), tmp_path / "emb.parquet")
    _latents_file(tmp_path, monkeypatch, myfolder, latents="emb.parquet", latent_column="emb", id_column="i",
                  checkpoint="fashion-mnist-vae-conv16")  # fmt: skip
    at = page_app("views", "decode_view")
    at.session_state["ds"] = "myfolder"
    at.session_state["proj"] = "PCA 2-D"
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert "latents read from" in " ".join(c.value for c in at.sidebar.caption)
    got = _map_of(at).encoded.latents
    assert got.shape == (GOOD, 16)
    assert all(np.isin(r, rows).all() for r in got)  # every point is a row of the file, none re-encoded
    # the colourings a file without errors cannot give are not offered; a selection still shows its images
    assert "reconstruction error" not in at.sidebar.selectbox(key="color").options
    at.session_state["pick"] = Picked((3, 10), None)
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert "2 selected" in " ".join(m.value for m in at.markdown)


def test_latents_of_another_checkpoint_are_left_and_the_page_says_so(myfolder, tmp_path, monkeypatch):
    from explorer.cli import main

    out = tmp_path / "encoded"
    ae = "checkpoints/mnist-ae-mlp32.safetensors"
    assert main(["encode", ae, "--data", str(myfolder), "--out", str(out), "--device", "cpu"]) == 0
    _latents_file(tmp_path, monkeypatch, myfolder, latents=str(out))
    at = page_app("views", "decode_view")
    at.session_state["ds"] = "myfolder"
    at.session_state["proj"] = "PCA 2-D"
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    (note,) = [i.value for i in at.info if "were made by" in i.value]
    assert "not fashion-mnist-vae-conv16: fashion-mnist-vae-conv16's are computed here" in note
    assert np.isfinite(_map_of(at).encoded.recon_error).all()  # the VAE's own encoding
    at.session_state["ckpt"] = "mnist-ae-mlp32"  # the checkpoint that made them: read, not encoded
    at.session_state["ds_for"] = "mnist-ae-mlp32"  # (as a person choosing the dataset again after the checkpoint)
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert f"latents read from {out.name}" in " ".join(c.value for c in at.sidebar.caption)
    from explorer.maps.shards import read_shards

    shards = read_shards(out)
    got = _map_of(at).encoded.latents
    assert got.shape == (GOOD, 32) and all(np.isin(r, shards.latents).all() for r in got)
