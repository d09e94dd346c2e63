"""The EfficientDet network: EfficientNet backbone, BiFPN, class and box heads."""

from effdet.model.efficientdet import (
    EfficientDet,
    build_model,
    count_params,
    flatten_predictions,
    variable_shapes,
)

__all__ = ["EfficientDet", "build_model", "count_params", "flatten_predictions", "variable_shapes"]
