"""EfficientDet as a library: the config tree, the model (model/), anchors, losses and post-processing; the data
side (data/: reading uploaded datasets, validation, automl TFRecord shards, the input pipeline); fine-tuning
(train, checkpoints, schedules, ema, precise_bn), evaluation, export, prediction and the `effdet` CLI.

Pure ML code: it knows nothing of HTTP, databases or job queues.
"""

__version__ = "0.1.0"
