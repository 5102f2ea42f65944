"""A config naming its own refinement is scored under it, as a dedicated evaluator would."""

from haq.config import BitConfig
from haq.evaluate import build_setup
from haq.quant import QuantSettings


def test_refined_config_scores_as_its_own_setup() -> None:
    plain = build_setup("digits_cnn", limit=200)
    own = build_setup("digits_cnn", limit=200, settings=QuantSettings(ptq="bias-correction"))
    config = BitConfig.uniform("w2a8", plain.quantizer.layer_names)
    refined = config.with_ptq("bias-correction")
    got = plain.evaluator.evaluate(refined)
    assert got.config.ptq == "bias-correction"
    assert got.metrics.top1 == own.evaluator.evaluate(config).metrics.top1
    assert plain.evaluator.for_config(refined).reference is plain.evaluator.reference
    # the prefix cache of the default refinement never serves a refined config
    assert plain.evaluator.evaluate(config).metrics.top1 != got.metrics.top1
