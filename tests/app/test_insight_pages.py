"""The probing pages (Your image, Denoising, Anomalies, Compression) through AppTest on the shipped checkpoints.

Pages turn errors into st.error, so each test also checks that no error is shown and that the page's
images, charts and numbers are there, not only that nothing raised.
"""

import io
import json

import pytest
from apptests import assert_clean, page_app, plotly_array
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.maps.pipeline import REPO as ROOT
from explorer.maps.selection import Picked
from explorer.ui import state

PAGES = {
    "image": "insight.image_view",
    "denoise": "insight.denoise_view",
    "anomalies": "fidelity.anomalies_view",
    "compression": "fidelity.compression_view",
}
CHECKPOINTS = [p.stem for p in state.shipped_checkpoints()]
SAE = next(n for n in CHECKPOINTS if "sae" in n)


def app(page: str, **session) -> AppTest:
    module, func = PAGES[page].split(".")
    at = page_app(module, func, timeout=240)
    for key, value in session.items():
        at.session_state[key] = value
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by widget key (the map's key starts with 'map:')."""
    return {c.proto.id.split("-", 2)[-1]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def the_map(at: AppTest) -> dict:
    (fig,) = [f for k, f in charts(at).items() if k.startswith("map:")]
    return fig


def captions(at: AppTest) -> list[str]:
    return [img.caption for im in at.get("image") for img in im.proto.imgs]


def tiles(at: AppTest) -> list[str]:
    """The names under the denoising tiles ("name", a line break, then the PSNR in bold)."""
    return [c.value.split("  \n")[0] for c in at.caption if c.value.endswith((" dB**", "&nbsp;"))]


def png(size=(28, 28), mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 200 if mode == "L" else (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------- every page


@pytest.mark.parametrize("ckpt", CHECKPOINTS)
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_on_every_shipped_checkpoint(page, ckpt):
    at = app(page, ckpt=ckpt, n=1000).run()
    assert_clean(at)
    figs = charts(at)
    if page == "compression":
        assert len(at.dataframe) == 1 and len(at.get("image")) == 1
    else:
        assert len(at.get("image")) >= 1 and any(k.startswith("map:") for k in figs)
    if page == "anomalies":
        assert "an_hist" in figs and [m.label for m in at.metric][:1] == ["AUROC"]
    if page == "denoise":
        assert "dn_curve" in figs


def test_the_app_registers_the_four_pages():
    text = (ROOT / "app.py").read_text()
    for path in PAGES:
        assert f'url_path="{path}"' in text


# ----------------------------------------------------------------------------------------- your image


def test_your_image_from_the_data_shows_reconstruction_neighbours_and_map_position():
    at = app("image").run()
    assert_clean(at)
    assert captions(at)[:2] == ["original", "reconstruction"]
    assert "its nearest mapped images in latent space" in captions(at)
    assert [m.label for m in at.metric] == ["Error (MSE)", "Worse than", "PSNR vs original"]
    names = [t.get("name") for t in the_map(at)["data"]]
    assert names[-1] == "your image"


def test_an_edit_is_shown_and_its_move_drawn_on_the_map():
    at = app("image", img_noise="gaussian", img_level=0.5, img_occ=10).run()
    assert_clean(at)
    assert captions(at)[:3] == ["original", "edited", "reconstruction"]
    assert any("gaussian noise 0.50" in m.value and "10 px square" in m.value for m in at.markdown)
    names = [t.get("name") for t in the_map(at)["data"]]
    assert names[-2:] == ["edit", "your image"]
    assert at.metric[2].proto.delta.endswith("dB vs edited")


@pytest.mark.parametrize("page", ["image", "denoise"])
def test_a_3d_map_marks_the_image_with_a_symbol_3d_plots_have(page):
    at = app(page, proj="UMAP 3-D", n=1000, img_noise="gaussian").run()
    assert_clean(at)
    spot = the_map(at)["data"][-1]
    assert spot["type"] == "scatter3d" and spot["marker"]["symbol"] == "diamond"  # scatter3d has no star


def test_a_map_pick_chooses_the_image():
    at = app("image").run()
    at.session_state["pick"] = Picked((42,), None)
    at.run()
    assert_clean(at)
    assert any(m.value.startswith("**#42 (") for m in at.markdown)


def test_an_uploaded_image_is_used_and_a_bad_one_refused_with_the_page_still_running():
    at = app("image", img_src="upload").run()
    assert_clean(at)
    at.file_uploader(key="img_file").set_value(("photo.png", png((120, 90), "RGB"), "image/png")).run()
    assert_clean(at)
    assert any("photo.png (90×120)" in m.value for m in at.markdown)
    assert [t.get("name") for t in the_map(at)["data"]][-1] == "your image"

    at.file_uploader(key="img_file").set_value(("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [
        "Image not used: broken.png is not a readable PNG or JPEG image: it is damaged or truncated; export it again"
    ]
    assert the_map(at)["data"], "the map is still drawn"
    at.file_uploader(key="img_file").set_value(("tiny.png", png((4, 4)), "image/png")).run()
    assert any("enlargement" in e.value for e in at.error)


def test_a_sparse_code_lists_its_features_with_links_to_their_pages():
    at = app("image", ckpt=SAE, n=1000).run()
    assert_clean(at)
    assert any(m.value.startswith("**32 of 1,024 features fire**") for m in at.markdown)
    bars = charts(at)["img_feature_bars"]["data"][0]
    assert len(bars["x"]) == 32
    links = [link.proto for link in at.get("page_link")]
    assert len(links) == 32 and {link.page for link in links} == {"features"}
    # each opens /features?feature=<i> in this session; laid out in rows of four, strongest first like the bars
    assert sorted(link.query_string for link in links) == sorted(f"feature={f}" for f in bars["x"])
    assert links[0].label.startswith(f"**{bars['x'][0]}** · ")


# ----------------------------------------------------------------------------------------- denoising


def test_denoising_compares_checkpoints_on_the_same_noise():
    at = app("denoise").run()
    assert_clean(at)
    compare = at.multiselect(key=f"dn_compare:{state.DEFAULT_CHECKPOINT}")
    assert compare.value == ["fashion-mnist-dae-conv32", "fashion-mnist-ae-conv32"]
    assert tiles(at) == ["clean", "noisy", "vae-conv16", "dae-conv32", "ae-conv32"]
    assert len(at.get("image")) == 5
    curve = charts(at)["dn_curve"]
    assert [t["name"] for t in curve["data"]] == ["noisy input", "vae-conv16", "dae-conv32", "ae-conv32"]
    assert any("dae-conv32: trained on gaussian noise" in c.value for c in at.caption)

    at.radio(key="dn_noise").set_value("salt and pepper").run()
    assert_clean(at)
    assert any("salt and pepper noise 0.30" in m.value for m in at.markdown)
    compare.set_value([]).run()
    assert tiles(at) == ["clean", "noisy", "vae-conv16"]


def test_the_denoising_autoencoder_beats_its_plain_twin_on_noisy_images():
    at = app("denoise", ckpt="fashion-mnist-ae-conv32", dn_level=0.3).run()
    assert_clean(at)
    curve = {t["name"]: plotly_array(t["y"]) for t in charts(at)["dn_curve"]["data"]}
    assert set(curve) == {"noisy input", "ae-conv32", "dae-conv32"}
    # the DAE was trained on gaussian noise 0.15: from 0.1 to 0.3 it restores clearly more than the AE
    levels = plotly_array(charts(at)["dn_curve"]["data"][0]["x"])
    around = (levels >= 0.09) & (levels <= 0.31)
    assert around.sum() == 3
    assert (curve["dae-conv32"][around] > curve["ae-conv32"][around] + 1.0).all()
    heavy = levels >= 0.19  # below that the noisy input itself is about as close to the clean image
    assert (curve["dae-conv32"][heavy] > curve["noisy input"][heavy]).all()


# ----------------------------------------------------------------------------------------- anomalies


def test_anomalies_show_the_worst_images_on_the_map_and_can_select_them():
    at = app("anomalies", an_n=8).run()
    assert_clean(at)
    assert any("The 8 worst reconstructed of 10,000" in m.value for m in at.markdown)
    worst = [t for t in the_map(at)["data"] if t.get("name") == "8 worst reconstructed"]
    assert len(worst) == 1 and len(worst[0]["text"]) == 8
    at.button(key="an_select").click().run()
    assert len(at.session_state["pick"].ids) == 8
    assert at.selectbox(key="an_other").value == "mnist"  # a 28x28 set first, not the 8x8 digits


def test_out_of_distribution_check_separates_digits_from_clothes():
    at = app("anomalies", an_other="mnist").run()
    assert_clean(at)
    auroc = float(at.metric[0].value)
    assert 0.5 < auroc <= 1.0  # digits reconstruct worse than clothes under a Fashion-MNIST model
    hist = charts(at)["an_hist"]["data"]
    assert [t["name"] for t in hist] == ["fashion-mnist:test (10,000)", "mnist-5k:test (1,000)"]
    at.toggle(key="an_show").set_value(True).run()
    assert_clean(at)
    assert [t.get("name") for t in the_map(at)["data"]][-1] == "mnist-5k:test"


# ----------------------------------------------------------------------------------------- compression


def test_compression_table_counts_bytes_and_every_shipped_model_can_be_listed():
    at = app("compression", cz_n=64).run()
    assert_clean(at)
    table = at.dataframe[0].value
    rows = dict(zip(table["storage"], table["bytes per image"]))
    assert rows["pixels, uncompressed"] == "784"
    assert rows["code, float16"] == "32" and rows["code, 8-bit"] == "16"  # the VAE's 16 numbers
    assert rows["8-bit range table"] == "128 once"
    psnr = dict(zip(table["storage"], table["PSNR (dB)"]))
    assert psnr["PNG, optimised"] == "∞ (lossless)" and float(psnr["code, float16"]) > 15
    assert any("Rows: original" in c.value for c in at.caption)

    at.toggle(key="cz_all").set_value(True).run()
    assert_clean(at)
    every = at.dataframe[1].value
    assert list(every["checkpoint"]) == CHECKPOINTS
    sae = every[every["checkpoint"] == SAE].iloc[0]
    assert sae["float16 bytes"] == 2048 and sae["sparse bytes"] == 128  # 32 non-zeros x (2 + 2) bytes
