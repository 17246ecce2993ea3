"""Latent space explorer: `streamlit run app.py`."""

import pandas  # noqa: F401  (see below)
import streamlit as st

from explorer import settings
from explorer.runtime import freeze_long_lived, tune_allocator
from explorer.ui import auth, compare, export, features, fidelity, insight, links, metrics_page, upload, views

# pandas is imported here, before any page, because plotly checks sys.modules for it without importing it: while
# one session's first table imports pandas, another session drawing its map would find it half-initialized
# (AttributeError: partially initialized module 'pandas'). Streamlit imports it on the first table anyway.
tune_allocator()  # before the first map: big freed blocks go back to the system (see there)
st.set_page_config(page_title="Latent space explorer", page_icon="🧭", layout="wide")
auth.require_login()  # nothing unless the host put [auth] in the app's secrets (docs/DEPLOY.md)

links.begin_run()  # every part of the page stages its share of the address; one write at the end

decode = st.Page(views.decode_view, title="Map & decode", url_path="decode", default=True)


def your_model() -> None:
    upload.upload_view(home=decode)


pages = {
    "": [  # the map pages, always in the top bar
        decode,
        st.Page(views.interpolate_view, title="Interpolate", url_path="interpolate"),
        st.Page(views.sample_view, title="Sample", url_path="sample"),
        st.Page(views.traverse_view, title="Traverse", url_path="traverse"),
    ],
    "Understand": [
        st.Page(metrics_page.metrics_view, title="Metrics", url_path="metrics"),
        st.Page(features.features_view, title="Features", url_path="features"),
        st.Page(fidelity.anomalies_view, title="Anomalies", url_path="anomalies"),
        st.Page(insight.denoise_view, title="Denoising", url_path="denoise"),
        st.Page(fidelity.compression_view, title="Compression", url_path="compression"),
        st.Page(compare.compare_view, title="Compare", url_path="compare"),
    ],
    "Yours": [
        st.Page(insight.image_view, title="Your image", url_path="image"),
        *([st.Page(your_model, title="Your model", url_path="upload")] if settings.current().allow_uploads else []),
        st.Page(export.export_view, title="Export", url_path="export"),
    ],
}
st.navigation(pages, position="top").run()
links.flush()
links.history_guard()  # browser history: one entry per step a person takes (see explorer/ui/links.py)
freeze_long_lived()  # after a run that imported something: keeps Streamlit's collection after each run cheap
