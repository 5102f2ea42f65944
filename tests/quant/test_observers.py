import numpy as np
import torch

from haq.quant.observers import StatsCollector, observe_range
from haq.quant.quantizers import act_qparams, fake_quant_act


def _stats(x: torch.Tensor):
    c = StatsCollector(channel_dim=1)
    c.update_range(x)
    c.update_hist(x)
    return c.finish()


def test_minmax_and_channel_means() -> None:
    x = torch.stack([torch.full((4, 4), 1.0), torch.full((4, 4), 3.0)]).unsqueeze(0)  # (1, 2, 4, 4)
    s = _stats(x)
    assert (s.lo, s.hi) == (1.0, 3.0)
    np.testing.assert_allclose(s.channel_mean, [1.0, 3.0])
    assert s.hist.sum() == x.numel()


def test_percentile_clips_outliers() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 1, 100_000)
    x[0, 0, 0] = 50.0
    s = _stats(x.reshape(1, 1, 1, -1))
    lo, hi = observe_range(s, 8, "percentile", 99.9)
    assert hi < 10.0 and lo > -10.0 and s.hi == 50.0


def test_mse_beats_minmax_on_heavy_tails() -> None:
    torch.manual_seed(0)
    x = torch.distributions.StudentT(2.0).sample((1, 1, 1, 200_000))
    s = _stats(x)

    def err(observer: str) -> float:
        scale, zp = act_qparams(*observe_range(s, 4, observer), 4)
        return float((fake_quant_act(x, scale, zp, 4) - x).pow(2).mean())

    assert err("mse") < err("minmax")
