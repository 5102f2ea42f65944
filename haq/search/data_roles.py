"""Which images play which role in a search: calibration, per-trial validation, final test.

Test images (``--data``) never steer the search; calibration and validation come from
``--calib-data`` (or, with ``--val-split``, from a part of ``--data`` the test never sees).
With no images at all, a search runs data-free on distilled images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from haq.errors import HaqError
from haq.progress import emit

if TYPE_CHECKING:
    from haq.search.options import SearchOptions


def calib_source(opts: SearchOptions, data: str) -> str:
    """Where calibration (and, without --val-split, validation) images come from."""
    if opts.calib_data:
        return opts.calib_data
    if data == "digits":
        return "digits:calib"
    if opts.val_split is not None:
        return data  # calibration images come from the validation part
    raise HaqError("pass --calib-data DIR (training images for calibration and validation) or 'distilled'; "
                   "test images (--data) never steer the search")  # fmt: skip


def data_free_defaults(opts: SearchOptions) -> str:
    """No images given and none built in: search data-free, on images distilled from the
    model's BatchNorm statistics (ZeroQ; made once by the driver, cached for every
    evaluator): half validate (a quarter of all also calibrates), half test; fidelity to the
    float model is the accuracy objective, since such images have no labels. Sets the
    options a resumed search reads back and returns the data source."""
    from haq.data.distilled import DEFAULT_N

    if opts.calib_data is not None and not opts.calib_data.startswith("distilled"):
        raise HaqError(f"pass --data DIR (test images) for {opts.model}")
    data = opts.data = opts.calib_data or f"distilled:{DEFAULT_N}"
    opts.calib_data = None
    if opts.val_split is None:
        opts.val_split = 0.5
    n = int(data.split(":")[1]) if ":" in data else DEFAULT_N
    if opts.calib_limit is None:  # leave validation images beside the calibration ones
        opts.calib_limit = max(1, int(n * opts.val_split) // 2)
    if opts.progress:
        emit("note", f"haq: no --data: a data-free search on {n} images distilled from "
             f"{opts.model}'s BatchNorm statistics ({data}; {1 - opts.val_split:.0%} test). "
             "Objective 'fidelity': % of images whose top-1 class the quantized model "
             "shares with the float model. Pass --data DIR and --calib-data DIR to search "
             "top-1 on real images", data=data, objective="fidelity")  # fmt: skip
    return data
