"""Which exported format predict serves by default: the fastest within 0.5 AP points of the SavedModel."""

from __future__ import annotations

from effdet.formats import ExportFormat, FormatScore, choose_default


def _scores(**rows: tuple[float | None, float | None]) -> dict[ExportFormat, FormatScore]:
    return {name: FormatScore(file=name, size_bytes=1, ap=ap, ms_per_image=ms) for name, (ap, ms) in rows.items()}  # type: ignore[misc]


def test_the_fastest_format_within_half_an_ap_point_serves_by_default() -> None:
    scores = _scores(saved_model=(0.50, 80.0), tflite=(0.498, 40.0), tflite_float16=(0.497, 38.0))
    assert choose_default(scores) == "tflite_float16"


def test_a_format_that_lost_more_than_half_an_ap_point_is_not_chosen_however_fast() -> None:
    assert choose_default(_scores(saved_model=(0.50, 80.0), tflite=(0.49, 10.0))) == "saved_model"


def test_without_val_scores_the_saved_model_serves() -> None:
    assert choose_default(_scores(saved_model=(None, None), tflite=(None, None))) == "saved_model"
