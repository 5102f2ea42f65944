import numpy as np

from haq.evaluate import Evaluator, build_setup


def test_calibration_and_evaluation_never_overlap() -> None:
    setup = build_setup("digits_cnn", data="digits", calib_limit=64)
    assert setup.calib is not None and len(setup.calib) == 64
    assert not np.intersect1d(setup.calib.indices, setup.data.indices).size
    assert len(setup.calib) + len(setup.data) == 450
    # an explicit, different calibration source leaves the evaluation split whole
    other = build_setup("digits_cnn", data="digits", calib_data="digits:calib", calib_limit=64)
    assert len(other.data) == 450


def test_evaluator_protocol_and_float_reference_cache(tmp_path) -> None:
    setup = build_setup("digits_cnn", needs_calibration=False, limit=100)
    assert isinstance(setup.evaluator, Evaluator)
    r = setup.evaluator.evaluate("w8a32")
    assert (
        r.metrics.n_images == 100 and r.metrics.agreement is not None and r.metrics.agreement > 90
    )
    again = build_setup("digits_cnn", needs_calibration=False, limit=100)
    assert (
        again.evaluator._reference_cache is not None and again.evaluator._reference_cache.is_file()
    )
    assert again.evaluator.evaluate("fp32").metrics.agreement == 100.0
