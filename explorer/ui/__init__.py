"""Streamlit views. Thin: they read widgets, call pure functions in explorer/, and draw results."""
