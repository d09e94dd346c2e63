"""The `effdet` command line: configs and models, data (stats, convert, synth) and the fine-tuning workflow
(train, eval, export, predict). TensorFlow is imported only by the commands that need it, so `--help` stays fast."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer
import yaml
from rich.progress import Progress

from effdet.cli_workflow import register as register_workflow
from effdet.config import Config, ConfigError, get_config

app = typer.Typer(help="EfficientDet: configs, data, training, evaluation, export, prediction.", no_args_is_help=True)

ModelArg = Annotated[str, typer.Argument(help="Variant, e.g. efficientdet-d0 ... efficientdet-d7x.")]
HparamsOpt = Annotated[
    str | None,
    typer.Option("--hparams", help="automl overrides: 'num_classes=1,image_size=640x384' or a .yaml file."),
]


def _config(model: str, hparams: str | dict[str, str] | None) -> Config:
    try:
        return get_config(model, hparams)
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(code=2) from None


def _build(config: Config):  # type: ignore[no-untyped-def]  # returns a keras.Model; TF is imported lazily
    if config.model.has_auto_anchors:
        typer.echo(
            "aspect_ratios or anchor_scale is 'auto': it is chosen on a dataset's training boxes when `effdet train` "
            "starts; give numbers here (e.g. aspect_ratios=1.0*2.0*0.5,anchor_scale=4.0)",
            err=True,
        )
        raise typer.Exit(code=2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from effdet.model import build_model

    return build_model(config)


@app.command()
def params(model: ModelArg, hparams: HparamsOpt = None) -> None:
    """Print one JSON line: the variant, its trainable parameter count and input size [H, W]."""
    from effdet.model import count_params

    config = _config(model, hparams)
    count = count_params(_build(config))
    typer.echo(json.dumps({"model": model, "params": count, "image_size": list(config.model.image_size)}))


@app.command()
def variables(model: ModelArg, hparams: HparamsOpt = None) -> None:
    """Print 'path shape' for every variable (paths are the official checkpoint names)."""
    from effdet.model import variable_shapes

    for path, shape in variable_shapes(_build(_config(model, hparams))):
        typer.echo(f"{path} {list(shape)}".replace(" ]", "]").replace(", ", ","))


@app.command()
def config(model: ModelArg, hparams: HparamsOpt = None) -> None:
    """Print the fully resolved hyperparameters as YAML (the form stored with every job)."""
    typer.echo(_config(model, hparams).to_yaml(), nl=False)


@contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, fed by progress(done, total) callbacks."""
    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _data_errors() -> tuple[type[Exception], ...]:
    from effdet.data.ingest import DatasetFormatError, UnsafeArchiveError

    return (DatasetFormatError, UnsafeArchiveError, FileExistsError, FileNotFoundError, ValueError)


def _read_label_map(value: str | None) -> dict[int, str] | None:
    """--label-map: inline JSON ('{"1": "plate"}') or a YAML/JSON file of id: name."""
    from effdet.data.labels import check_label_map

    if value is None:
        return None
    data = json.loads(value) if value.lstrip().startswith("{") else yaml.safe_load(Path(value).read_text())
    return check_label_map(data)


def _read_class_aliases(value: str | None) -> dict[str, str] | None:
    """--class-aliases: inline JSON ('{"lp": "licence plate"}') or a YAML/JSON file of alias: name."""
    from effdet.data.labels import check_class_aliases

    if value is None:
        return None
    data = json.loads(value) if value.lstrip().startswith("{") else yaml.safe_load(Path(value).read_text())
    return check_class_aliases(data)


FormatOpt = Annotated[str, typer.Option("--format", help="auto, coco, voc, yolo, csv, ccpd or tfrecord.")]
ImageSizeOpt = Annotated[str, typer.Option("--image-size", help="Network input for the anchor check: 512 or 'WxH'.")]
LabelMapOpt = Annotated[
    str | None,
    typer.Option("--label-map", help='Class ids: inline JSON \'{"1": "plate"}\' or a YAML/JSON file of id: name.'),
]
AliasesOpt = Annotated[
    str | None,
    typer.Option(
        "--class-aliases", help='Merge spellings: inline JSON \'{"lp": "licence plate"}\' or a file of alias: name.'
    ),
]


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Dataset folder or .zip.")],
    output: Annotated[Path, typer.Option("--output", help="New (or empty) folder for the TFRecords.")],
    format: FormatOpt = "auto",
    val_fraction: Annotated[float, typer.Option("--val-fraction")] = 0.1,
    label_map: LabelMapOpt = None,
    class_aliases: AliasesOpt = None,
    num_shards: Annotated[
        int | None, typer.Option("--num-shards", help="Shards per split (default: 1 per 1000).")
    ] = None,
    seed: int = 0,
    image_size: ImageSizeOpt = "512",
) -> None:
    """Validate a dataset and write automl TFRecord shards, val ground truth and dataset.json."""
    from effdet.data.convert import convert_dataset

    model = _config("efficientdet-d0", {"image_size": image_size}).model
    try:
        with _progress_bar("converting") as progress:
            report = convert_dataset(
                source,
                output,
                format,
                val_fraction,
                seed,
                num_shards,
                _read_label_map(label_map),
                _read_class_aliases(class_aliases),
                model,
                progress=progress,
            )
    except _data_errors() as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    splits = ", ".join(f"{name}: {s.images} images / {s.boxes} boxes" for name, s in report.splits.items())
    errors = sum(p.severity == "error" for p in report.problems)
    typer.echo(
        f"{output}: {splits}; {len(report.problems)} problems ({errors} errors), "
        f"{len(report.dropped_images)} images dropped; details in {output / 'dataset.json'}"
    )


@app.command()
def stats(
    source: Annotated[Path, typer.Argument(help="Dataset folder or .zip.")],
    format: FormatOpt = "auto",
    image_size: ImageSizeOpt = "512",
    label_map: LabelMapOpt = None,
    class_aliases: AliasesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document for machines.")] = False,
) -> None:
    """Print statistics, problems and an anchor suggestion for a dataset (writes nothing)."""
    from effdet.data.convert import inspect_dataset

    model = _config("efficientdet-d0", {"image_size": image_size}).model
    try:
        with _progress_bar("validating") as progress:
            report = inspect_dataset(
                source, format, model, _read_label_map(label_map), _read_class_aliases(class_aliases), progress=progress
            )
    except _data_errors() as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    s = report.stats
    typer.echo(
        f"format {report.format}: {report.images} usable images, {s.num_boxes} boxes, classes {report.label_map}"
    )
    typer.echo(f"boxes per class: {s.class_counts}; most boxes in one image: {s.max_boxes_per_image}")
    typer.echo(f"COCO sizes: {s.coco_sizes.model_dump()}")
    for problem in report.problems:
        where = f"{problem.file}" + (f" [object {problem.object_index}]" if problem.object_index is not None else "")
        typer.echo(f"{problem.severity}: {where}: {problem.message}")
    if report.anchors:
        a = report.anchors
        typer.echo(
            f"anchors: default aspect_ratios {a.default_aspect_ratios} match {a.default_matched_fraction:.0%} of boxes "
            f"(mean IoU {a.default_mean_iou:.2f}); suggested aspect_ratios {a.aspect_ratios}, anchor_scale "
            f"{a.anchor_scale} match {a.suggested_matched_fraction:.0%} (mean IoU {a.suggested_mean_iou:.2f})"
        )


def _pair(text: str, separator: str, option: str, example: str) -> tuple[int, int]:
    """Two positive integers written 'AxB' or 'A-B'; a usage error naming the option otherwise."""
    parts = text.lower().split(separator)
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise typer.BadParameter(f"{text!r} is not two positive whole numbers such as {example}", param_hint=option)
    first, second = (int(p) for p in parts)
    return first, second


@app.command()
def synth(
    output: Annotated[Path, typer.Option("--output", help="Folder to write the dataset into.")],
    num_images: Annotated[int, typer.Option("--num-images", min=1)] = 100,
    format: Annotated[Literal["voc", "coco", "ccpd"], typer.Option("--format")] = "voc",
    seed: int = 0,
    size: Annotated[str, typer.Option("--size", help="Scene width x height in pixels, e.g. 2400x1600.")] = "320x240",
    plate_width: Annotated[
        str | None,
        typer.Option("--plate-width", help="Plate width range in pixels, e.g. 40-100 (default: 15-60 % of the scene)."),
    ] = None,
    masks: Annotated[
        bool, typer.Option("--masks", help="Also write each plate's polygon as its COCO segmentation (coco only).")
    ] = False,
) -> None:
    """Render synthetic licence-plate scenes with exact boxes (and masks, for segmentation) for fast learning tests."""
    from effdet.data.synthetic import write_dataset

    scene = _pair(size, "x", "--size", "320x240")
    widths = _pair(plate_width, "-", "--plate-width", "40-100") if plate_width else None
    try:
        with _progress_bar("rendering") as progress:
            write_dataset(
                output,
                num_images,
                format,
                seed=seed,
                image_size=scene,
                progress=progress,
                plate_width=widths,
                masks=masks,
            )
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"{output}: {num_images} images ({format}{', with masks' if masks else ''})")


@app.command("import-backbone")
def import_backbone(
    pth: Annotated[Path, typer.Argument(help="PyTorch state dict, e.g. efficientnet-lite0-57934424.pth.")],
    model: Annotated[str, typer.Option("--model", help="Variant whose backbone it is, e.g. efficientdet-lite0.")],
    output: Annotated[Path, typer.Option("--output", help="Folder for the checkpoint (give it to --pretrained).")],
) -> None:
    """Convert ImageNet EfficientNet(-Lite) weights from PyTorch into a pretrained backbone checkpoint."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from effdet.torch_import import TorchImportError
    from effdet.torch_import import import_backbone as convert

    _config(model, None)
    try:
        report = convert(pth, model, output)
    except TorchImportError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(code=2) from None
    typer.echo(report.summary())


register_workflow(app)

if __name__ == "__main__":
    app()
