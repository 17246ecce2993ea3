"""Views in links: values parsed against their bounds, selections packed and unpacked, nothing raises."""

import base64
import zlib

import numpy as np
import pytest

from explorer.ui import urlstate
from explorer.ui.urlstate import Field, choice, integer, number, point

FIELDS = (
    Field("n", "n", choice([1000, 10000, 0]), 10000),
    Field("md", "md", number(0.0, 0.99), 0.1),
    Field("seed", "seed", integer(0, 2**31 - 1), 0),
    Field("proj", "proj", choice(["UMAP 2-D", "PCA 2-D"]), "UMAP 2-D"),
)


@pytest.mark.parametrize(
    "ids", [(0,), (3, 10, 42), tuple(range(500, 1000)), (9999,), tuple(np.random.default_rng(0).choice(70000, 900))]
)
def test_selections_round_trip(ids):
    text = urlstate.encode_ids(ids)
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert urlstate.decode_ids(text, 70000) == tuple(sorted(set(int(i) for i in ids)))


def test_a_box_selection_makes_a_short_link():
    ids = tuple(sorted(np.random.default_rng(1).choice(10000, 500, replace=False)))
    assert len(urlstate.encode_ids(ids)) < 1000


@pytest.mark.parametrize(
    "text, says",
    [
        ("@@@", "not a selection"),
        ("AAAA", "not a selection"),  # base64, but not deflate
        ("x" * (urlstate.MAX_IDS_CHARS + 1), "not a selection"),
    ],
)
def test_bad_selections_are_refused_with_a_reason(text, says):
    with pytest.raises(ValueError, match=says):
        urlstate.decode_ids(text, 10000)


def test_a_selection_outside_the_map_is_refused():
    with pytest.raises(ValueError, match="#10000, but this map has 10,000 images"):
        urlstate.decode_ids(urlstate.encode_ids([5, 10000]), 10000)


def test_a_small_text_cannot_inflate_into_gigabytes():
    bomb = zlib.compress(b"\xff" * (urlstate.MAX_IDS // 8 + 4096), 9)
    text = base64.urlsafe_b64encode(bomb).decode().rstrip("=")
    assert len(text) <= urlstate.MAX_IDS_CHARS
    with pytest.raises(ValueError, match="more rows"):
        urlstate.decode_ids(text, 10**9)


def test_read_keeps_good_values_and_names_each_bad_one():
    values, notices = urlstate.read({"n": "0", "md": "7", "seed": "12", "proj": "TSNE", "other": "x"}, FIELDS)
    assert values == {"n": 0, "seed": 12}
    assert len(notices) == 2
    assert "“md=7” was ignored: it must be between 0 and 0.99." in notices
    assert notices[1].startswith("“proj=TSNE” was ignored: it must be one of UMAP 2-D, PCA 2-D")


@pytest.mark.parametrize(
    "parser, text",
    [(integer(0, 9), "1e3"), (integer(0, 9), "10"), (integer(0, 9), ""), (number(0, 1), "nan"),
     (number(0, 1), "inf"), (point(2), "1"), (point(2), "1,nan"), (point(2), "1,2,3")],
)  # fmt: skip
def test_parsers_refuse(parser, text):
    with pytest.raises(ValueError):
        parser(text)


def test_written_leaves_defaults_out_and_reads_back():
    values = {"n": 0, "md": 0.1, "seed": 7, "proj": "PCA 2-D"}
    params = urlstate.written(values, FIELDS)
    assert params == {"n": "0", "seed": "7", "proj": "PCA 2-D"}
    back, notices = urlstate.read(params, FIELDS)
    assert not notices and back == {"n": 0, "seed": 7, "proj": "PCA 2-D"}
    assert point(2)(urlstate.written({"spot": (1.5, -2.25)}, (Field("spot", "spot", point(2)),))["spot"]) == (
        1.5,
        -2.25,
    )
