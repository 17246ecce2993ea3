"""Plotly figures, image grids and sprite sheets, and the files a map is exported to."""
