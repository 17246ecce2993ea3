"""Latent space explorer: `streamlit run app.py`."""

import streamlit as st

from explorer.ui import upload, views

st.set_page_config(page_title="Latent space explorer", page_icon="🧭", layout="wide")

decode = st.Page(views.decode_view, title="Map & decode", url_path="decode", default=True)


def your_model() -> None:
    upload.upload_view(home=decode)


pages = [
    decode,
    st.Page(views.interpolate_view, title="Interpolate", url_path="interpolate"),
    st.Page(views.sample_view, title="Sample", url_path="sample"),
    st.Page(views.traverse_view, title="Traverse", url_path="traverse"),
    st.Page(your_model, title="Your model", url_path="upload"),
]
st.navigation(pages, position="top").run()
