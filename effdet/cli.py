"""The `effdet` command line: inspect variants and their resolved configs (more commands come with data and
training). TensorFlow is imported only by the commands that build a model, so `--help` stays fast."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from effdet.config import Config, ConfigError, get_config

app = typer.Typer(help="EfficientDet: configs, models (and soon data, training, export).", no_args_is_help=True)

ModelArg = Annotated[str, typer.Argument(help="Variant, e.g. efficientdet-d0 ... efficientdet-d7x.")]
HparamsOpt = Annotated[
    str | None,
    typer.Option("--hparams", help="automl overrides: 'num_classes=1,image_size=640x384' or a .yaml file."),
]


def _config(model: str, hparams: str | None) -> Config:
    try:
        return get_config(model, hparams)
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(code=2) from None


def _build(config: Config):  # type: ignore[no-untyped-def]  # returns a keras.Model; TF is imported lazily
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


if __name__ == "__main__":
    app()
