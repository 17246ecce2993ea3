"""Selection dicts as Streamlit hands them over -> global ids and picked spots."""

import pytest

from explorer.maps.selection import Picked, parse_point, picked


def test_empty_and_none():
    assert picked(None) == Picked()
    assert not picked({"points": [], "box": [], "lasso": []})


def test_ids_come_from_customdata_across_traces():
    selection = {
        "points": [
            {"curve_number": 0, "point_index": 3, "customdata": 17, "x": 1, "y": 2},
            {"curve_number": 2, "point_index": 3, "customdata": [905], "x": 1, "y": 2},
            {"curve_number": 1, "point_index": 0, "customdata": 17.0},  # duplicate id
        ]
    }
    assert picked(selection).ids == (17, 905)


def test_overlay_points_without_ids_are_ignored():
    selection = {"points": [{"curve_number": 5, "point_index": 1}, {"customdata": None}, {"customdata": "x"}]}
    assert picked(selection).ids == ()


def test_ids_out_of_range_or_fractional_are_dropped():
    selection = {"points": [{"customdata": 4}, {"customdata": 10}, {"customdata": -1}, {"customdata": 2.5}]}
    assert picked(selection, n_rows=10).ids == (4,)


def test_box_over_empty_space_gives_a_spot():
    sel = {"points": [], "box": [{"xref": "x", "yref": "y", "x": [1.0, 3.0], "y": [-2.0, 0.0]}]}
    p = picked(sel)
    assert p.ids == () and p.spot == (2.0, -1.0) and p


def test_lasso_spot_and_last_region_wins():
    sel = {
        "points": [{"customdata": 1}],
        "box": [{"x": [0, 2], "y": [0, 2]}],
        "lasso": [{"x": [10, 12, 14], "y": [0, 4, 0]}],
    }
    assert picked(sel) == Picked((1,), (12.0, 2.0))


def test_malformed_regions_are_ignored():
    assert picked({"box": [{"x": ["a", "b"], "y": [1, 2]}, {"x": [1], "y": []}]}).spot is None


@pytest.mark.parametrize(("text", "expected"), [("1.5, -2", (1.5, -2.0)), ("3 4", (3.0, 4.0)), ("0;0", (0.0, 0.0))])
def test_parse_point(text, expected):
    assert parse_point(text) == expected


@pytest.mark.parametrize("text", ["1", "a, b", "nan, 1", "1e9, 0", "1,2,3"])
def test_parse_point_refuses(text):
    with pytest.raises(ValueError):
        parse_point(text)


def test_find_an_index_or_a_class():
    import numpy as np

    from explorer.maps.selection import find

    labels = np.array([0, 1, 1, 2])
    names = ["cat", "Dog", "bird"]
    assert find("#2", labels, names).tolist() == [2] and find(" 0 ", labels, names).tolist() == [0]
    assert find("dog", labels, names).tolist() == [1, 2]
    with pytest.raises(ValueError, match="indices run from 0 to 3"):
        find("4", labels, names)
    with pytest.raises(ValueError, match="one of: cat, Dog, bird"):
        find("cow", labels, names)
