"""The converter on a real set that spells its one class two ways: it warns and offers the merge, and with
the aliases it trains one class."""

from __future__ import annotations

import json
from pathlib import Path

from effdet.data.convert import convert_dataset
from tests.helpers.respelled import respelled_raccoon_zip


def test_convert_warns_about_one_class_spelled_two_ways(tmp_path: Path) -> None:
    source = respelled_raccoon_zip(tmp_path / "raccoon.zip")
    report = convert_dataset(source, tmp_path / "out", workers=1)
    assert report.label_map == {1: "Raccoon", 2: "raccoon"}  # VOC classes are numbered sorted
    (similar,) = [problem for problem in report.problems if problem.code == "similar_class_names"]
    assert similar.severity == "warning"
    assert similar.class_aliases == {"Raccoon": "raccoon"}
    assert '"raccoon" (19 boxes) and "Raccoon" (2 boxes)' in similar.message


def test_convert_with_class_aliases_makes_one_class_without_warning(tmp_path: Path) -> None:
    source = respelled_raccoon_zip(tmp_path / "raccoon.zip")
    report = convert_dataset(source, tmp_path / "out", aliases={"Raccoon": "raccoon"}, workers=1)
    assert report.label_map == {1: "raccoon"}
    assert sum(split.boxes for split in report.splits.values()) == 21
    assert not [problem for problem in report.problems if problem.code == "similar_class_names"]


def test_convert_does_not_warn_about_different_classes(tmp_path: Path) -> None:
    source = respelled_raccoon_zip(tmp_path / "raccoon.zip", spelling="dog")
    report = convert_dataset(source, tmp_path / "out", workers=1)
    assert sorted(report.label_map.values()) == ["dog", "raccoon"]
    assert not [problem for problem in report.problems if problem.code == "similar_class_names"]


def test_cli_convert_and_stats_take_class_aliases_and_label_map_as_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from effdet.cli import app

    runner = CliRunner()
    source = respelled_raccoon_zip(tmp_path / "raccoon.zip")
    stats = runner.invoke(app, ["stats", str(source)])
    assert stats.exit_code == 0, stats.output
    assert 'merge them with class_aliases {"Raccoon": "raccoon"}' in stats.stdout

    args = ["convert", str(source), "--output", str(tmp_path / "out"), "--class-aliases", '{"Raccoon": "raccoon"}']
    converted = runner.invoke(app, [*args, "--label-map", '{"1": "raccoon"}'])
    assert converted.exit_code == 0, converted.output
    report = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert report["label_map"] == {"1": "raccoon"}

    chained = runner.invoke(app, ["stats", str(source), "--class-aliases", '{"a": "b", "b": "c"}'])
    assert chained.exit_code == 2
    assert "class_aliases chains" in chained.output
