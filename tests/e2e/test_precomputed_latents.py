"""Latents written by another program open as a map in Chromium: a folder of Fashion-MNIST PNGs on the server,
a Parquet of latents the VAE's weights gave in a script of its own (not the explorer's encoder), a data file
naming both. The map is drawn from the file's latents, a box selection shows the folder's images, and the
sidebar says where the latents came from."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from browsing import drag, plot_area, wait_for_map
from PIL import Image

from explorer.checkpoint import load_checkpoint
from explorer.data import load_dataset
from explorer.devserver import running_app
from explorer.maps.pipeline import CHECKPOINT_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

N = 600
VAE = "fashion-mnist-vae-conv16"


@pytest.fixture(scope="module")
def latents_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("precomputed")
    ds = load_dataset("fashion-mnist", "test")
    folder = tmp / "clothes"
    for i in range(N):  # one folder per class, as people keep images
        cls = folder / ds.class_names[int(ds.labels[i])].replace("/", "-")
        cls.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(ds.images[i].reshape(28, 28)).save(buf, format="PNG")
        (cls / f"{i:05d}.png").write_bytes(buf.getvalue())
    # "another program": the folder's files in its own order, the weights run by plain torch
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    model = load_checkpoint(CHECKPOINT_DIR / f"{VAE}.safetensors")
    pixels = np.stack([np.asarray(Image.open(folder / f)) for f in files]).astype(np.float32) / 255.0
    with torch.no_grad():
        z = model.encode(torch.from_numpy(pixels[:, None]))
    z = (z[0] if isinstance(z, tuple) else z).numpy().astype(np.float32)
    flat, offsets = pa.array(z.ravel()), pa.array(np.arange(0, z.size + 1, z.shape[1], dtype=np.int32))
    table = pa.table({"idx": np.arange(len(files)), "embedding": pa.ListArray.from_arrays(offsets, flat)})
    pq.write_table(table, tmp / "embeddings.parquet")
    (tmp / "data.toml").write_text(
        f'[data.clothes]\npath = "{folder}"\nlatents = "{tmp / "embeddings.parquet"}"\nid_column = "idx"\n'
        f'checkpoint = "{VAE}"\n'
    )
    env = {"EXPLORER_DATA_FILE": str(tmp / "data.toml"), "EXPLORER_WARM_UMAP": "0"}
    with running_app(tmp / "cache", tmp / "streamlit.log", env) as url:
        yield url


def test_latents_from_another_program_open_as_a_map_with_thumbnails(latents_server, page, screenshots):
    page.goto(f"{latents_server}/?ckpt={VAE}&ds=clothes&proj=PCA+2-D")
    wait_for_map(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("latents read from", exact=False).first.wait_for(timeout=60_000)
    assert sidebar.get_by_text(f"{N:,} images of clothes", exact=False).count() >= 1
    area = plot_area(page)
    drag(page, area["x"] + area["width"] * 0.25, area["y"] + area["height"] * 0.25,
         area["x"] + area["width"] * 0.75, area["y"] + area["height"] * 0.75)  # fmt: skip
    page.get_by_text("selected", exact=False).first.wait_for(timeout=60_000)
    thumbs = page.locator(".lx-thumb img")
    thumbs.first.wait_for(timeout=30_000)
    assert thumbs.count() >= 2
    page.screenshot(path=str(screenshots / "precomputed-latents.png"))
