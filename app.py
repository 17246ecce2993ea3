"""Latent space explorer: `streamlit run app.py`."""

import streamlit as st

from explorer.ui import views

st.set_page_config(page_title="Latent space explorer", page_icon="🧭", layout="wide")

pages = [
    st.Page(views.decode_view, title="Map & decode", url_path="decode", default=True),
    st.Page(views.interpolate_view, title="Interpolate", url_path="interpolate"),
    st.Page(views.sample_view, title="Sample", url_path="sample"),
    st.Page(views.traverse_view, title="Traverse", url_path="traverse"),
]
st.navigation(pages, position="top").run()
