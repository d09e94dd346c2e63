"""Label maps: 1-based ids in a stable order, aliases, user-fixed ids, unknown classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from effdet.data.labels import LabelMap, build_label_map, label_names_of
from effdet.data.read_result import ReadResult
from effdet.data.records import Box, Record


def _record(*labels: str) -> Record:
    """An image with one unit box per label."""
    boxes = [Box(xmin=0, ymin=0, xmax=1, ymax=1, label=label) for label in labels]
    return Record(image_path=Path("/data/a.jpg"), filename="a.jpg", annotation_file="a.xml", boxes=boxes)


def test_build_label_map_numbers_names_from_one_in_the_order_given() -> None:
    label_map = build_label_map(["raccoon", " dog ", "raccoon", "cat"])
    assert label_map.names == {1: "raccoon", 2: "dog", 3: "cat"}
    assert label_map.num_classes == 3
    assert label_map.id_of("dog") == 2
    assert label_map.id_of(" cat") == 3


def test_build_label_map_merges_aliases() -> None:
    label_map = build_label_map(["num_plate", "number_plate", "car"], aliases={"num_plate": "number_plate"})
    assert label_map.names == {1: "number_plate", 2: "car"}
    assert label_map.id_of("num_plate") == 1


def test_build_label_map_keeps_the_ids_of_a_user_map() -> None:
    label_map = build_label_map(["dog", "raccoon"], user_map={3: "raccoon", 1: "dog "})
    assert label_map.names == {1: "dog", 3: "raccoon"}
    assert label_map.num_classes == 3
    assert label_map.id_of("raccoon") == 3


@pytest.mark.parametrize(
    ("user_map", "match"),
    [({0: "raccoon"}, r"ids \[0\] are below 1"), ({1: "raccoon", 2: " raccoon"}, r"\['raccoon'\] are given more")],
)
def test_build_label_map_rejects_a_bad_user_map(user_map: dict[int, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_label_map([], user_map=user_map)


def test_id_of_an_unknown_name_says_which_names_exist() -> None:
    with pytest.raises(KeyError, match=r"'cat' is not in the label map; known: \['dog', 'raccoon'\]"):
        build_label_map(["raccoon", "dog"]).id_of("cat")


def test_label_names_of_keeps_declared_order_then_sorts_the_rest() -> None:
    declared = ReadResult(format="coco", records=[_record("dog", "zebra", "ant")], label_names=["dog", "cat"])
    assert label_names_of(declared) == ["dog", "cat", "ant", "zebra"]
    undeclared = ReadResult(format="voc", records=[_record("raccoon", "bear", "raccoon")])
    assert label_names_of(undeclared) == ["bear", "raccoon"]


def test_label_map_round_trips_through_json() -> None:
    label_map = build_label_map(["raccoon"], aliases={"racoon": "raccoon"})
    assert LabelMap.model_validate_json(label_map.model_dump_json()) == label_map
