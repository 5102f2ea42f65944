"""Data sources for calibration and evaluation, materialised as tensors once.

Sources are named by what users type after ``--data`` / ``--calib-data``:
- a directory: an ImageFolder root (``<root>/<class>/<image>``), e.g. ImageNet val or
  ``../shared/data/cifar10-jpeg/test``;
- ``digits`` / ``digits:calib`` / ``digits:train``: scikit-learn's bundled digits (held-out test / held-out calibration / training split);
- ``synthetic`` (or ``synthetic:N``): seeded Gaussian images with random labels, for smoke runs;
- ``distilled`` (or ``distilled:N``): ZeroQ-style images optimised so every BatchNorm layer's
  input statistics match its running statistics (no data needed; labels unknown).
"""

from haq.data.sources import DataSplit, TensorData, load_data, select_indices

__all__ = ["DataSplit", "TensorData", "load_data", "select_indices"]
