"""Real checkpoints for tests of the checkpoint folder: a variant's variables (zeros) as a TF1 name->tensor
checkpoint, whole or backbone only, written with TensorFlow as effdet writes shared weights."""

from __future__ import annotations

from pathlib import Path


def write_variant_checkpoint(prefix: Path, model: str, backbone_only: bool = False) -> Path:
    """Write the preset `model`'s variables at `prefix` (its `.index` and data file) and return the prefix."""
    import tensorflow as tf

    from effdet.checkpoints import save_named_weights
    from effdet.config import get_config
    from effdet.model.structure import variable_specs

    config = get_config(model).model
    specs = variable_specs(config)
    if backbone_only:
        specs = {path: shape for path, shape in specs.items() if path.startswith(config.backbone_name + "/")}
    return save_named_weights({path: tf.zeros(shape) for path, shape in specs.items()}, prefix)
