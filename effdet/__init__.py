"""EfficientDet as a library: the config tree, the model (model/), anchors, losses and post-processing; the data
side (data/: reading uploaded datasets, validation, automl TFRecord shards, the input pipeline); fine-tuning
(train, checkpoints, schedules, ema, precise_bn), evaluation, export, prediction and the `effdet` CLI.

Pure ML code: it knows nothing of HTTP, databases or job queues.
"""

import os

__version__ = "0.1.0"

# TensorFlow's oneDNN kernels, set before TensorFlow loads (it reads this once, at import). TensorFlow turns them on
# by itself only on CPUs with AVX-512 VNNI, bf16 or AMX, yet on an AVX2-only AMD EPYC they train D0 at 512 twice as
# fast as its default Eigen kernels (BENCHMARKS.md, Training). TF_ENABLE_ONEDNN_OPTS=0 gives TensorFlow's choice back.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
