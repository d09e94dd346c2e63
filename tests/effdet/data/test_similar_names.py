"""Class names that probably spell one class, and the checks of user aliases and label maps."""

from __future__ import annotations

import pytest

from effdet.data.labels import check_class_aliases, check_label_map
from effdet.data.similar_names import SimilarPair, edit_distance, similar_class_problems, similar_classes, why_similar


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("licence_plate", "Licence Plate", "case or separators"),
        ("Raccoon", "raccoon", "case or separators"),
        ("plate", "plates", "plural"),
        ("battery", "batteries", "plural"),
        ("lp", "licence plate", "abbreviation"),
        ("lic. plate", "licence plate", "abbreviation"),
        ("raccoon", "racoon", "spelling"),
        ("licence plate", "license plate", "spelling"),
    ],
)
def test_why_similar_names_the_kind_of_likeness(a: str, b: str, reason: str) -> None:
    assert why_similar(a, b) == reason
    assert why_similar(b, a) == reason


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("cat", "dog"),
        ("car", "cart"),  # short words: one letter is a different word
        ("class1", "class2"),  # numbers differ
        ("type a", "type b"),
        ("person", "prison"),
        ("plate", "licence plate"),
        ("raccoon", "raccoon"),
    ],
)
def test_why_similar_keeps_different_classes_apart(a: str, b: str) -> None:
    assert why_similar(a, b) is None


def test_edit_distance_counts_insertions_deletions_and_substitutions() -> None:
    assert edit_distance("raccoon", "racoon") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3


def test_similar_classes_merge_each_rare_spelling_into_the_most_common_name() -> None:
    pairs = similar_classes({"Raccoon": 20, "raccoon": 180, "racoon": 5, "dog": 40})
    assert pairs == [
        SimilarPair("Raccoon", "raccoon", 20, 180, "case or separators"),
        SimilarPair("racoon", "raccoon", 5, 180, "spelling"),
    ]


def test_similar_class_problem_names_both_classes_and_carries_the_merge() -> None:
    (problem,) = similar_class_problems({"licence plate": 412, "lp": 31})
    assert problem.code == "similar_class_names"
    assert problem.severity == "warning"
    assert problem.message == (
        'classes "licence plate" (412 boxes) and "lp" (31 boxes) look like one class (abbreviation); merge them '
        'with class_aliases {"lp": "licence plate"} (PATCH /v1/datasets/{id}, or effdet convert --class-aliases)'
    )
    assert problem.class_aliases == {"lp": "licence plate"}
    assert problem.model_dump()["class_aliases"] == {"lp": "licence plate"}


def test_problems_without_a_merge_serialize_as_before() -> None:
    from effdet.data.records import warning

    assert "class_aliases" not in warning("a.jpg", "box_clipped", "clipped").model_dump()


def test_check_class_aliases_strips_names() -> None:
    assert check_class_aliases({" lp ": "licence plate "}) == {"lp": "licence plate"}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (["lp"], "JSON object"),
        ({"lp": 3}, "as strings"),
        ({"lp": ""}, "non-empty"),
        ({"lp": "lp"}, "itself"),
        ({"a": "b", "b": "c"}, "chains"),
    ],
)
def test_check_class_aliases_says_what_to_fix(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_class_aliases(value)


def test_check_label_map_takes_json_string_ids() -> None:
    assert check_label_map({"2": "plate", "1": "car"}) == {2: "plate", 1: "car"}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("plate", "JSON object"),
        ({"0": "plate"}, "positive integer"),
        ({"-1": "plate"}, "positive integer"),
        ({"x": "plate"}, "positive integer"),
        ({"1": ""}, "non-empty"),
        ({"1": "plate", "2": "plate"}, "more than one id"),
        ({}, "empty"),
    ],
)
def test_check_label_map_says_what_to_fix(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_label_map(value)
