"""A fresh map of a whole dataset through the real page script, as a person waits for it.

``python -m benchmarks.fresh_page_map [--split all] [--n 0]``: Streamlit's AppTest runs the Map &
decode page in this process with an empty cache, then reruns it with the sidebar set to the split
and size asked for; the figure is that rerun's wall time (dataset load, encoding, neighbours,
layout, the map's figure), the same work as a person choosing "all" in the sidebar.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", default="all", choices=["test", "train", "all"])
    p.add_argument("--n", type=int, default=0, help="images to map (0 = all)")
    args = p.parse_args()
    os.environ["EXPLORER_CACHE_DIR"] = tempfile.mkdtemp(prefix="fresh-page-map-")
    os.environ["EXPLORER_WARM_UMAP"] = "0"  # the background compile would share the cores with the fit
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string("from explorer.ui import views\nviews.decode_view()\n", default_timeout=900).run()
    at.session_state["split"] = args.split
    at.session_state["n"] = args.n
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    if at.exception or at.error:
        raise SystemExit(f"the page failed: {at.exception or [e.value for e in at.error]}")
    print(f"{[c.value for c in at.sidebar.caption][-1]}\nfresh map through the page: {seconds:.1f} s")


if __name__ == "__main__":
    main()
