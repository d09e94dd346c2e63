"""The fine-tuning commands of the `effdet` CLI: train (with a live progress bar), eval, export and predict.

They are registered on the main app by effdet.cli; each loads TensorFlow only when it runs.
"""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from effdet.config import Config, ConfigError, ineffective_keys, parse_overrides
from effdet.data.layout import GROUND_TRUTH_FILE
from effdet.workflow import DEFAULT_MIN_SCORE_THRESH, Records, resolve_config, size_warnings

WhichOpt = Annotated[str, typer.Option("--which", help="Weights of the run: final, best (by val AP) or latest.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _train_config(model: str | None, hparams: str | None, run_dir: Path, records: Records) -> Config:
    """The preset + the dataset's implied settings + the user's overrides (a run dir's saved config on resume)."""
    from effdet.layout import CONFIG_FILE

    try:
        given = parse_overrides(hparams)
        if model is None:
            if not (run_dir / CONFIG_FILE).exists():
                raise _fail("--model is required for a new run (e.g. --model efficientdet-d0)")
            return Config.from_yaml(run_dir / CONFIG_FILE).override(given)
        return resolve_config(model, records.report(), given)
    except ConfigError as err:
        raise _fail(str(err)) from None


def train(
    train_files: Annotated[str, typer.Option("--train", help="TFRecords to train on: 'DIR/train-*.tfrecord'.")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="This run's folder; run again to resume.")],
    model: Annotated[str | None, typer.Option("--model", help="Variant, e.g. efficientdet-d0.")] = None,
    val_files: Annotated[str | None, typer.Option("--val", help="Val TFRecords (for --eval-every).")] = None,
    hparams: Annotated[str | None, typer.Option("--hparams", help="'a=b,c=d' or an automl .yaml file.")] = None,
    num_steps: Annotated[int | None, typer.Option("--num-steps", min=1)] = None,
    num_epochs: Annotated[float | None, typer.Option("--num-epochs", min=0.001)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    pretrained: Annotated[Path | None, typer.Option("--pretrained", help="Checkpoint to start from.")] = None,
    var_freeze_expr: Annotated[str | None, typer.Option("--var-freeze-expr", help="Regex of frozen paths.")] = None,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", help="Wall-clock budget.")] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1)] = 500,
    eval_every: Annotated[int | None, typer.Option("--eval-every", min=1, help="Keep the best by val AP.")] = None,
    seed: int = 0,
) -> None:
    """Fine-tune (or resume) a model; Ctrl-C stops after the current step and leaves a resumable checkpoint."""
    from effdet.checkpoints import CheckpointError
    from effdet.train import TrainingDivergedError, TrainOptions
    from effdet.workflow import fine_tune

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    records = Records.from_glob(train_files, val=val_files)
    config = _train_config(model, hparams, run_dir, records)
    if var_freeze_expr:
        config = config.override({"var_freeze_expr": var_freeze_expr})
    for warning in ineffective_keys(parse_overrides(hparams)) + size_warnings(records.report(), config):
        typer.echo(f"warning: {warning}", err=True)
    options = TrainOptions(
        batch_size=batch_size,
        num_steps=num_steps,
        num_epochs=num_epochs,
        max_train_seconds=max_seconds,
        seed=seed,
        pretrained=pretrained,
        checkpoint_every=checkpoint_every,
        eval_every=eval_every,
        progress_interval_s=0.5,
    )
    stop = {"asked": False}

    def interrupted(*_: object) -> None:
        stop["asked"] = True

    previous = signal.signal(signal.SIGINT, interrupted)
    columns = (TextColumn("step {task.completed}/{task.total}"), BarColumn(), TextColumn("{task.description}"))
    try:
        with Progress(*columns, TimeRemainingColumn(), transient=False) as bar:
            task = bar.add_task("starting", total=None)

            def show(p: Any) -> None:
                text = f"loss {p.loss:.4f} lr {p.learning_rate:.2e} {p.images_per_sec:.1f} img/s"
                bar.update(task, completed=p.step, total=p.total_steps, description=text)

            result = fine_tune(config, records, run_dir, options, on_progress=show, should_stop=lambda: stop["asked"])
    except (CheckpointError, TrainingDivergedError, FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    typer.echo(result.model_dump_json())


def evaluate(
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="A training run to evaluate.")] = None,
    saved_model: Annotated[Path | None, typer.Option("--saved-model", help="Or an exported model.")] = None,
    val_files: Annotated[str | None, typer.Option("--val", help="Val TFRecords: 'DIR/val-*.tfrecord'.")] = None,
    ground_truth: Annotated[Path | None, typer.Option("--ground-truth", help="Default: val_annotations.json.")] = None,
    which: WhichOpt = "final",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            "--score-threshold",
            min=0,
            max=1,
            help="Also count per class the found, false and missed boxes at this score, with a confusion matrix.",
        ),
    ] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="Include per-class AP and PR curves.")] = False,
) -> None:
    """COCO metrics on the val split; a run's metrics are also written to RUN_DIR/metrics.json."""
    from effdet.checkpoints import CheckpointError
    from effdet.confusion import confusion_matrix
    from effdet.evaluate import coco_metrics, model_detections, saved_model_detections, write_metrics
    from effdet.layout import METRICS_FILE
    from effdet.workflow import load_run

    if (run_dir is None) == (saved_model is None) or val_files is None:
        raise _fail("give --val and exactly one of --run-dir or --saved-model")
    truth = ground_truth or Path(val_files).parent / GROUND_TRUTH_FILE
    try:
        if saved_model is not None:
            detections = saved_model_detections(saved_model, val_files, batch_size)
        else:
            assert run_dir is not None
            loaded = load_run(run_dir, which)
            detections = model_detections(loaded.model, loaded.config, val_files, batch_size)
        metrics = coco_metrics(truth, detections)
        if run_dir is not None:
            write_metrics(metrics, run_dir / METRICS_FILE)
        answer = metrics.model_dump(mode="json", exclude=None if per_class else {"per_class"})
        if score_threshold is not None:
            document = json.loads(truth.read_text())
            answer["confusion"] = confusion_matrix(document, detections, score_threshold).model_dump(mode="json")
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    typer.echo(json.dumps(answer))


def export(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="The training run to export.")],
    output: Annotated[Path, typer.Option("--output", help="New folder for the SavedModel.")],
    min_score: Annotated[float, typer.Option("--min-score", min=0.0, max=1.0)] = DEFAULT_MIN_SCORE_THRESH,
    tflite: Annotated[bool, typer.Option("--tflite", help="Also write model.tflite (float32).")] = False,
    which: WhichOpt = "final",
) -> None:
    """Export a run's averaged weights as a SavedModel with pre- and post-processing inside (and TFLite)."""
    from effdet.checkpoints import CheckpointError
    from effdet.workflow import export_run

    try:
        path = export_run(run_dir, output, min_score, which, tflite)
    except (CheckpointError, FileExistsError) as err:
        raise _fail(str(err)) from None
    typer.echo(str(path))


def predict(
    saved_model: Annotated[Path, typer.Argument(help="An exported SavedModel folder.")],
    images: Annotated[list[Path], typer.Argument(help="JPEG or PNG files.")],
    score_threshold: Annotated[float | None, typer.Option("--score-threshold", min=0.0, max=1.0)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    draw: Annotated[Path | None, typer.Option("--draw", help="Output image (one input) or folder.")] = None,
    mask_out: Annotated[
        Path | None,
        typer.Option(
            "--mask-out", help="A segmentation model's class map as a PNG of class ids (one input) or folder."
        ),
    ] = None,
) -> None:
    """Detect objects in images with an exported model (and segment them, for a model with a segmentation head);
    print them, or draw them."""
    from effdet.predict import load_exported, mask_rle, predict_batch

    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise _fail(f"no such image: {', '.join(missing)}")
    try:
        loaded = load_exported(saved_model)
        data = [p.read_bytes() for p in images]
        found = predict_batch(loaded, data, score_threshold)
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    if mask_out is not None and not loaded.segments:
        raise _fail(f"{saved_model} has no segmentation head, so it has no class map for --mask-out")
    _write_outputs(images, data, found, draw, mask_out)
    names = loaded.segmentation_classes or {}
    if as_json:
        document = {
            str(p): [d.model_dump() for d in f.detections]
            if f.class_map is None
            else {"detections": [d.model_dump() for d in f.detections], "segmentation": _rle(f.class_map, names)}
            for p, f in zip(images, found, strict=True)
        }
        typer.echo(json.dumps(document))
        return
    for path, prediction in zip(images, found, strict=True):
        typer.echo(f"{path}: {len(prediction.detections)} objects")
        for d in prediction.detections:
            box = ", ".join(f"{v:.1f}" for v in d.box)
            typer.echo(f"  {d.label} {d.score:.3f} [{box}]")
        if prediction.class_map is not None:
            for mask in mask_rle(prediction.class_map, names):
                typer.echo(f"  {mask.label}: {mask.area} pixels")


def _rle(class_map: Any, names: dict[int, str]) -> list[dict[str, Any]]:
    """A class map as the JSON of its classes' COCO RLE."""
    from effdet.predict import mask_rle

    return [mask.model_dump() for mask in mask_rle(class_map, names)]


def _target(folder_or_file: Path, source: Path, suffix: str, many: bool) -> Path:
    """Where one image's output goes: the given file for one input, else `<stem><suffix>` in the folder."""
    target = folder_or_file / f"{source.stem}{suffix}" if many or folder_or_file.is_dir() else folder_or_file
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _write_outputs(
    images: list[Path], data: list[bytes], found: list[Any], draw: Path | None, mask_out: Path | None
) -> None:
    """The drawn images (class map under the boxes) and the class map PNGs asked for."""
    from effdet.predict import draw_detections, draw_segmentation, mask_png

    many = len(images) > 1
    for path, image, prediction in zip(images, data, found, strict=True):
        class_map = prediction.class_map
        if draw is not None:
            picture = draw_segmentation(image, class_map) if class_map is not None else image
            draw_detections(picture, prediction.detections).convert("RGB").save(_target(draw, path, ".jpg", many))
        if mask_out is not None and class_map is not None:
            _target(mask_out, path, ".png", many).write_bytes(mask_png(class_map))


def register(app: typer.Typer) -> None:
    """Add the workflow commands to the main CLI."""
    app.command()(train)
    app.command(name="eval")(evaluate)
    app.command()(export)
    app.command()(predict)
