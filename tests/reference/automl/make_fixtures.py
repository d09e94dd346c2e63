"""Write reference checkpoints and head outputs with google/automl's own EfficientDet code.

Why this exists: effdet loads checkpoints written by google/automl (the TF1 release format, the TF2 Keras
``save_weights`` format and the checkpoints automl's TF2 training loop leaves in its model dir). The fixtures written
here let a test check that effdet, after loading each of them, reproduces automl's own class and box head outputs.
They are produced by automl's code, never by ours, and automl's code is not copied into this project.

Model: ``efficientdet-lite0`` with automl's defaults except ``num_classes=3`` and ``image_size=128``. Every variable
holds a low-entropy value (see ``value_for``) so that the xz-compressed checkpoints stay small; the moving averages
use other random signs than the raw weights, so that a test can tell which of the two was loaded.

Run it in a separate virtual environment (automl needs TensorFlow < 2.16), never in the project's:

    python3.11 -m venv /tmp/automl-venv
    /tmp/automl-venv/bin/pip install tensorflow-cpu==2.15.1 numpy==1.23.5 tensorflow-addons==0.23.0 \
        tf-keras==2.15.1 absl-py pyyaml pillow lxml tensorflow-hub==0.16.1 neural-structured-learning==1.4.0 \
        matplotlib==3.8.4 pycocotools==2.0.8
    git clone https://github.com/google/automl /tmp/automl   # the commit is in fixtures/README.md
    PYTHONPATH=/tmp/automl/efficientdet /tmp/automl-venv/bin/python tests/reference/automl/make_fixtures.py

It replaces the fixture folders (not README.md) in ``fixtures/`` next to this file; ``--out DIR`` writes elsewhere.
The script is named without a ``test_`` prefix so that pytest never collects it (it cannot import in the project's
environment anyway).
"""

import argparse
import contextlib
import lzma
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np

MODEL_NAME = "efficientdet-lite0"
OVERRIDES = {"num_classes": 3, "image_size": 128}
IMAGE_SIZE = 128
SEED = 1234
LEVELS = range(3, 8)
STREAMS = {"raw": 1, "ema": 2}  # the moving averages draw other signs than the raw weights
TF1_GLOBAL_STEP = 1000
SEG_OVERRIDES = {"heads": ["object_detection", "segmentation"]}
EMA_SUFFIX = "/ExponentialMovingAverage"


def value_for(name: str, shape, stream: str = "raw") -> np.ndarray:
    """The low-entropy value of the variable ``name`` (no ``:0``): a fixed magnitude with a random sign per element.

    The signs depend only on (SEED, stream, name), so every format holds the same values for the same variable.
    """
    shape = tuple(int(d) for d in shape)
    rng = np.random.default_rng([SEED, STREAMS[stream], zlib.crc32(name.encode())])
    sign = rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0
    leaf = name.rsplit("/", 1)[-1]
    if leaf in ("kernel", "pointwise_kernel"):
        value = sign / np.sqrt(np.prod(shape[:-1]))
    elif leaf == "depthwise_kernel":
        value = sign / np.sqrt(shape[0] * shape[1])
    elif leaf == "gamma":
        value = 1.0 + 0.1 * sign
    elif leaf in ("beta", "bias", "moving_mean"):
        value = 0.1 * sign
    elif leaf == "moving_variance":
        value = 1.0 + 0.5 * sign
    else:
        raise ValueError(f"no value scheme for variable {name!r}")
    return value.astype(np.float32)


def make_config(detection: bool = False, overrides=None):
    """automl's config for the model, as tf2/eval.py (or, with ``detection``, tf2/train.py) builds it."""
    import hparams_config
    import utils

    config = (hparams_config.get_detection_config if detection else hparams_config.get_efficientdet_config)(MODEL_NAME)
    config.override({**OVERRIDES, **(overrides or {})})
    config.image_size = utils.parse_image_size(config.image_size)
    return config


def head_outputs(model, image: np.ndarray) -> dict[str, np.ndarray]:
    """automl's forward pass, ``model(image, training=False)``, as a dict class_3..7 and box_3..7."""
    cls_outputs, box_outputs = model(image, training=False)
    out = {}
    for i, level in enumerate(LEVELS):
        out[f"class_{level}"] = np.asarray(cls_outputs[i], dtype=np.float32)
        out[f"box_{level}"] = np.asarray(box_outputs[i], dtype=np.float32)
    return out


def eval_model(overrides=None):
    """A fresh ``EfficientDetNet`` built as tf2/eval.py builds it (no optimizer)."""
    import tensorflow as tf
    from tf2 import efficientdet_keras

    tf.keras.backend.clear_session()  # fresh layer-name counters, so variable names match automl's
    config = make_config(overrides=overrides)
    model = efficientdet_keras.EfficientDetNet(config=config)
    model.build((None, *config.image_size, 3))
    return model, config


def compress_data_files(folder: Path) -> None:
    """Replace every ``*.data-*`` file in ``folder`` by ``<file>.xz`` (lzma, preset 9)."""
    for path in sorted(folder.glob("*.data-*")):
        if path.suffix == ".xz":
            continue
        with path.open("rb") as src, lzma.open(str(path) + ".xz", "wb", preset=9) as dst:
            shutil.copyfileobj(src, dst)
        path.unlink()


@contextlib.contextmanager
def unpacked(folder: Path):
    """A temporary copy of a fixture folder with its ``.xz`` data files decompressed, as a test would use it."""
    with tempfile.TemporaryDirectory() as tmp:
        for path in folder.iterdir():
            if path.name.endswith(".xz"):
                with lzma.open(path, "rb") as src, open(os.path.join(tmp, path.name[: -len(".xz")]), "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                shutil.copy(path, tmp)
        yield Path(tmp)


def restored_outputs(ckpt_dir: Path, image: np.ndarray, ema_decay=None) -> dict[str, np.ndarray]:
    """Outputs after automl's own loading path (tf2/eval.py, infer_lib.KerasDriver): ``util_keras.restore_ckpt``."""
    import tensorflow as tf
    from tf2 import util_keras

    model, config = eval_model()
    with unpacked(ckpt_dir) as tmp:
        ckpt = tf.train.latest_checkpoint(str(tmp))
        decay = config.moving_average_decay if ema_decay is None else ema_decay
        util_keras.restore_ckpt(model, ckpt, decay, skip_mismatch=False)
    return head_outputs(model, image)


def write_tf1(folder: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """TF1 name->tensor checkpoint, as automl's TF1 training (det_model_fn + estimator) writes it.

    The graph is automl's ``efficientdet_arch.efficientdet``; the shadow variables come from
    ``tf.compat.v1.train.ExponentialMovingAverage(...).apply(utils.get_ema_vars())`` exactly as in det_model_fn, and
    the file is written by ``tf.compat.v1.train.Saver`` (sharded, relative paths, like the estimator's saver) without
    the momentum slots and without the .meta graph, as in automl's released checkpoints.

    Returns the outputs of automl's TF1 inference loading path (``inference.restore_ckpt``, which prefers the
    moving averages) in a fresh graph, as a cross-check of the TF2 loading path.
    """
    import efficientdet_arch
    import inference
    import tensorflow as tf
    import utils

    tf1 = tf.compat.v1
    config = make_config()
    config.is_training_bn = False
    graph = tf.Graph()
    with graph.as_default():
        features = tf1.placeholder(tf.float32, [1, IMAGE_SIZE, IMAGE_SIZE, 3])
        efficientdet_arch.efficientdet(features, config=config)
        global_step = tf1.train.get_or_create_global_step()
        ema = tf1.train.ExponentialMovingAverage(decay=config.moving_average_decay, num_updates=global_step)
        ema.apply(utils.get_ema_vars())
        feed = {}
        assigns = []
        for var in tf1.global_variables():
            name = var.op.name
            if var is global_step:
                value = np.int64(TF1_GLOBAL_STEP)
            elif name.endswith(EMA_SUFFIX):
                value = value_for(name[: -len(EMA_SUFFIX)], var.shape, "ema")
            else:
                value = value_for(name, var.shape, "raw")
            placeholder = tf1.placeholder(var.dtype.base_dtype, var.shape)
            assigns.append(tf1.assign(var, placeholder))
            feed[placeholder] = value
        assign_all = tf.group(*assigns)
        saver = tf1.train.Saver(sharded=True, save_relative_paths=True)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(assign_all, feed_dict=feed)
            saver.save(sess, str(folder / "model"), write_meta_graph=False)
    compress_data_files(folder)

    graph = tf.Graph()
    with graph.as_default():
        features = tf1.placeholder(tf.float32, [1, IMAGE_SIZE, IMAGE_SIZE, 3])
        cls_outputs, box_outputs = efficientdet_arch.efficientdet(features, config=config)
        with tf1.Session(graph=graph) as sess, unpacked(folder) as tmp:
            inference.restore_ckpt(sess, str(tmp / "model"), ema_decay=config.moving_average_decay)
            values = sess.run({"cls": cls_outputs, "box": box_outputs}, feed_dict={features: image})
    out = {}
    for level in LEVELS:
        out[f"class_{level}"] = values["cls"][level]
        out[f"box_{level}"] = values["box"][level]
    return out


def write_tf2_weights(folder: Path) -> None:
    """``EfficientDetNet.save_weights(prefix)``: Keras' object-based TF checkpoint of automl's TF2 model (raw weights).

    This is also what automl's ``tf2/inspector.py --mode=dry --export_ckpt=...`` writes.
    """
    model, _ = eval_model()
    for var in model.weights:
        var.assign(value_for(var.name[: -len(":0")], var.shape, "raw"))
    model.save_weights(str(folder / "model"))
    compress_data_files(folder)


def write_tf2_seg(folder: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """Both heads (``heads=['object_detection', 'segmentation']``, automl's default ``seg_num_classes=3``) saved by
    ``save_weights``, and automl's outputs after its own restore: class/box per level plus ``seg`` [1, 32, 32, 3].

    Also writes ``variables.txt``: each variable's name in the model next to its checkpoint key, so that the mapping
    a loader relies on is on record."""
    import tensorflow as tf
    from tf2 import util_keras

    model, _ = eval_model(SEG_OVERRIDES)
    for var in model.weights:
        var.assign(value_for(var.name[: -len(":0")], var.shape, "raw"))
    model.save_weights(str(folder / "model"))
    keys = {name for name, _ in tf.train.list_variables(str(folder / "model"))}
    seg_keys = sorted(k.split("/.ATTRIBUTES/")[0] for k in keys if k.startswith("seg_head/"))
    names = sorted(v.name[: -len(":0")] for v in model.weights if v.name.startswith("segmentation_head/"))
    lines = ["# checkpoint keys", *seg_keys, "# variable names", *names]
    (folder / "variables.txt").write_text("\n".join(lines) + "\n")
    compress_data_files(folder)

    model, config = eval_model(SEG_OVERRIDES)
    with unpacked(folder) as tmp:
        util_keras.restore_ckpt(model, tf.train.latest_checkpoint(str(tmp)), config.moving_average_decay)
    cls_outputs, box_outputs, seg = model(image, training=False)
    out = {"seg": np.asarray(seg, dtype=np.float32)}
    for i, level in enumerate(LEVELS):
        out[f"class_{level}"] = np.asarray(cls_outputs[i], dtype=np.float32)
        out[f"box_{level}"] = np.asarray(box_outputs[i], dtype=np.float32)
    return out


def train_config(model_dir: Path, moving_average_decay=None):
    """The config tf2/train.py's main() builds (no flags given but model_dir, batch_size 1, one step an epoch)."""
    config = make_config(detection=True)
    params = {
        "profile": False,
        "model_name": MODEL_NAME,
        "steps_per_execution": 1,
        "model_dir": str(model_dir),
        "steps_per_epoch": 1,
        "strategy": "",
        "batch_size": 1,
        "tf_random_seed": None,
        "debug": False,
        "val_json_file": None,
        "eval_samples": 1,
        "num_shards": 1,
    }
    config.override(params, True)
    if moving_average_decay is not None:
        config.moving_average_decay = moving_average_decay
    return config


def fake_batch(config):
    """One batch of (image, labels) in the layout automl's dataloader gives train_step."""
    num_anchors = len(config.aspect_ratios) * config.num_scales
    image = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    labels = {"mean_num_positives": np.array([1.0], np.float32)}
    for level in LEVELS:
        size = IMAGE_SIZE // 2**level
        labels[f"cls_targets_{level}"] = np.full((1, size, size, num_anchors), -1, np.int32)
        labels[f"box_targets_{level}"] = np.zeros((1, size, size, num_anchors * 4), np.float32)
    return image, labels


def write_tf2_train(out: Path, name: str, raw_name: str) -> None:
    """Checkpoints as automl's TF2 training loop (tf2/train.py + tf2/train_lib.py) saves them.

    train.py compiles ``EfficientDetNetTrain`` with ``train_lib.get_optimizer`` (SGD with momentum wrapped in
    ``tfa.optimizers.MovingAverage``, so the averages are the optimizer's 'average' slots) and saves with the callback
    of ``train_lib.get_callbacks``: with a moving_average_decay (lite0's default, 0.9998) that is
    ``tfa.callbacks.AverageModelCheckpoint(update_weights=False, save_weights_only=True)`` writing
    ``emackpt-{epoch}``; it copies the averages into the trainable variables, calls ``model.save_weights`` and puts
    the raw weights back. ``out/name`` gets that checkpoint after one real ``fit`` step followed by assigning the
    fixture values to every variable and slot, and the ``config.yaml`` train.py writes (``init_experimental``); the
    model dirs are given relative to ``out`` so that no absolute path is written.

    ``out/raw_name`` gets the same model and optimizer saved with train_lib's other callback, the plain
    ``tf.keras.callbacks.ModelCheckpoint`` (``ckpt-{epoch}``, which train_lib uses when moving_average_decay is
    unset): its model variables hold the raw weights and only its 'average' slots the averages.

    TensorFlow >= 2.11 makes ``tf.keras.optimizers.SGD`` the new optimizer, which tfa's MovingAverage rejects
    (TypeError); as automl ran on TF <= 2.10, where that name was today's legacy SGD, the legacy SGD stands in for it
    while ``get_optimizer`` runs.
    """
    from unittest import mock

    import tensorflow as tf
    from tf2 import train, train_lib

    scratch = Path(tempfile.mkdtemp())
    config = train_config(scratch)
    tf.keras.mixed_precision.set_global_policy("float32")
    strategy = tf.distribute.OneDeviceStrategy("device:CPU:0")
    tf.keras.backend.clear_session()
    with strategy.scope():
        model = train_lib.EfficientDetNetTrain(config=config)
        with mock.patch.object(tf.keras.optimizers, "SGD", tf.keras.optimizers.legacy.SGD):
            model = train.setup_model(model, config)
        image, labels = fake_batch(config)
        model.fit(
            image,
            labels,
            epochs=1,
            steps_per_epoch=1,
            callbacks=train_lib.get_callbacks(config.as_dict()),
            verbose=0,
        )
    shutil.rmtree(scratch, ignore_errors=True)

    optimizer = model.optimizer
    for var in model.weights:
        var.assign(value_for(var.name[: -len(":0")], var.shape, "raw"))
    for var in model.trainable_weights:
        optimizer.get_slot(var, "average").assign(value_for(var.name[: -len(":0")], var.shape, "ema"))
        optimizer._optimizer.get_slot(var, "momentum").assign(tf.zeros_like(var))

    with contextlib.chdir(out):
        for target, decay in ((name, None), (raw_name, 0)):
            train.init_experimental(train_config(Path(target)))
            callback = train_lib.get_callbacks(train_config(Path(target), decay).as_dict())[0]
            callback.set_model(model)
            callback.on_epoch_end(0, logs={})
            compress_data_files(Path(target))


def tf2_train_averages_by_hand(ckpt_dir: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs after restoring the model variables with automl's restore, then every trainable variable from its
    optimizer 'average' slot, found by hand in the checkpoint's object graph."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    from tf2 import util_keras

    model, config = eval_model()
    with unpacked(ckpt_dir) as tmp:
        ckpt = tf.train.latest_checkpoint(str(tmp))
        util_keras.restore_ckpt(model, ckpt, config.moving_average_decay, skip_mismatch=False)
        reader = tf.train.load_checkpoint(ckpt)
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        average_key = {}  # variable full_name -> checkpoint key of its 'average' slot
        for node in graph.nodes:
            for slot in node.slot_variables:
                if slot.slot_name != "average":
                    continue
                original = graph.nodes[slot.original_variable_node_id].attributes[0]
                slot_attr = graph.nodes[slot.slot_variable_node_id].attributes[0]
                average_key[original.full_name] = slot_attr.checkpoint_key
        for var in model.trainable_weights:
            var.assign(reader.get_tensor(average_key[var.name[: -len(":0")]]))
    return head_outputs(model, image)


def assert_close(a: dict, b: dict, what: str, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=f"{what}: {key}")


def assert_differ(a: dict, b: dict, what: str) -> None:
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    assert diff > 1e-2, f"{what}: outputs should differ but max |diff| is {diff}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "fixtures")
    parser.add_argument("--only-seg", action="store_true", help="rewrite tf2_seg/ alone, the other fixtures kept")
    args = parser.parse_args()
    out: Path = args.out

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    out.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(SEED).standard_normal((1, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    shutil.rmtree(out / "tf2_seg", ignore_errors=True)
    (out / "tf2_seg").mkdir()
    seg_outputs = write_tf2_seg(out / "tf2_seg", image)
    np.savez(out / "tf2_seg_outputs.npz", **seg_outputs)
    print(f"tf2_seg_outputs: max |seg| {float(np.max(np.abs(seg_outputs['seg']))):.4f}")
    if args.only_seg:
        return
    for name in ("tf1", "tf2_weights", "tf2_train", "tf2_train_ckpt"):
        shutil.rmtree(out / name, ignore_errors=True)
        (out / name).mkdir()
    for stale in out.glob("*.np[yz]"):
        if stale.name != "tf2_seg_outputs.npz":
            stale.unlink()

    np.save(out / "input.npy", image)

    # Saved: what automl's own loading path gives for each checkpoint, plus, where that path ignores the averages
    # (tf2_train_ckpt), the outputs with the averages assigned by hand.
    saved = {}
    tf1_graph = write_tf1(out / "tf1", image)
    saved["tf1_outputs"] = restored_outputs(out / "tf1", image)
    tf1_raw = restored_outputs(out / "tf1", image, ema_decay=0)

    write_tf2_weights(out / "tf2_weights")
    saved["tf2_weights_outputs"] = restored_outputs(out / "tf2_weights", image)

    write_tf2_train(out, "tf2_train", "tf2_train_ckpt")
    saved["tf2_train_outputs"] = restored_outputs(out / "tf2_train", image)
    tf2_train_by_hand = tf2_train_averages_by_hand(out / "tf2_train", image)
    saved["tf2_train_ckpt_outputs"] = restored_outputs(out / "tf2_train_ckpt", image)
    saved["tf2_train_ckpt_average_outputs"] = tf2_train_averages_by_hand(out / "tf2_train_ckpt", image)

    # Consistency: the same values give the same outputs whatever the format and loading path. Outputs that are
    # equal to a saved one by construction are checked here rather than saved again (see fixtures/README.md).
    assert_close(tf1_graph, saved["tf1_outputs"], "TF1 graph + inference.restore_ckpt vs TF2 restore", 1e-4, 1e-4)
    assert_close(tf1_raw, saved["tf2_weights_outputs"], "tf1 without EMA vs tf2_weights")
    assert_close(saved["tf2_train_ckpt_outputs"], saved["tf2_weights_outputs"], "tf2_train_ckpt vs tf2_weights")
    assert_close(tf2_train_by_hand, saved["tf2_train_outputs"], "tf2_train averages by hand vs restore")
    assert_close(saved["tf2_train_ckpt_average_outputs"], saved["tf2_train_outputs"], "ckpt averages vs emackpt")
    assert_differ(saved["tf1_outputs"], saved["tf2_weights_outputs"], "tf1 EMA vs raw")
    assert_differ(saved["tf2_train_outputs"], saved["tf2_weights_outputs"], "tf2_train vs raw")
    assert_differ(saved["tf2_train_outputs"], saved["tf1_outputs"], "tf2_train vs tf1 EMA")
    graph_diff = max(float(np.max(np.abs(tf1_graph[k] - saved["tf1_outputs"][k]))) for k in tf1_graph)
    print(f"TF1 graph-mode outputs vs TF2 restore: max |diff| {graph_diff:.3g}")

    for name, values in saved.items():
        np.savez(out / f"{name}.npz", **values)
        scale = max(float(np.max(np.abs(v))) for v in values.values())
        print(f"{name}: max |output| {scale:.4f}")


if __name__ == "__main__":
    main()
