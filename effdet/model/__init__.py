"""The EfficientDet network: EfficientNet backbone, BiFPN, class and box heads.

The Keras model loads on first use of one of these names, not on import of the package, so that
`effdet.model.structure` (the network described without TensorFlow, which the API imports) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from effdet.model.efficientdet import (
        EfficientDet,
        build_model,
        count_params,
        flatten_predictions,
        variable_shapes,
    )

__all__ = ["EfficientDet", "build_model", "count_params", "flatten_predictions", "variable_shapes"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("effdet.model.efficientdet"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
