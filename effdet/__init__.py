"""EfficientDet as a library: config, model, anchors, losses, post-processing (and later data, train, export).

Pure ML code: it knows nothing of HTTP, databases or job queues.
"""

__version__ = "0.1.0"
