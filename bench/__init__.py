"""Benchmarks, run as `python -m bench.NAME`; importing effdet first gives TensorFlow the product's settings."""

import effdet  # noqa: F401
