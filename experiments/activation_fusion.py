"""What does the activation after a layer cost on cpu-avx512? The same six-layer net
(1x1 / depthwise 3x3 convs at 112x112, MobileNet-like) with ReLU, ReLU6, Hardswish, SiLU or no
activation, profiled like `haq profile` does (uniform fp32 and int8 configs, fastest of 3 wall
medians, in-graph node times). Shows why a layer's measured time depends on its neighbours:
ONNX Runtime fuses some activations into the conv (and pays for it inside the kernel) and
runs others as separate nodes at the boundary.

    python experiments/activation_fusion.py
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

from torch import nn

from haq.hardware.ort.files import read_observations
from haq.hardware.ort.jobs import profile_target

from common import save

ACTS = {"none": None, "relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish,
        "silu": nn.SiLU}  # fmt: skip
HAQ_PREPROCESS = {"input_size": (16, 112, 112), "mean": (0.0,) * 16, "std": (1.0,) * 16}
SHAPES = [(96, 1, 1), (96, 3, 96), (24, 1, 1), (144, 1, 1), (144, 3, 144), (24, 1, 1)]


def _net(act: type[nn.Module] | None) -> nn.Module:
    layers: list[nn.Module] = []
    c = 16
    for i, (co, k, g) in enumerate(SHAPES):
        layers += [nn.Conv2d(c, co, k, padding=k // 2, groups=g, bias=False), nn.BatchNorm2d(co)]
        if act is not None and i % 3 != 2:  # projections stay linear, as in MobileNetV2
            layers.append(act())
        c = co
    return nn.Sequential(*layers)


def __getattr__(name: str):  # factories for `haq.models.custom`: activation_fusion.py:net_relu6
    if name.startswith("net_") and name[4:] in ACTS:
        return lambda: _net(ACTS[name[4:]])
    raise AttributeError(name)


def main() -> None:
    warnings.filterwarnings("ignore")
    here = Path(__file__).resolve()
    models = [f"{here}:net_{a}" for a in ACTS]
    with tempfile.TemporaryDirectory() as tmp:
        profile_target(models, directory=Path(tmp) / "t", threads=(1,), repeats=3,
                          classes=["fp32", "int8"], transitions=False, progress=lambda _: None)  # fmt: skip
        obs = read_observations(Path(tmp) / "t")
    out: dict[str, dict[str, object]] = {}
    for ob in obs:
        act, cls = ob["model"].rsplit("net_", 1)[1], ob["config"].split(":")[1]
        s = ob["scale"]
        out.setdefault(act, {})[cls] = {
            "wall_ms": round(ob["wall_us"] / 1e3, 3),
            "layers_us": [round(r[3] * s, 1) for r in ob["layers"]],
            "boundaries_us": [round(b[1] * s, 1) for b in ob["boundaries"]],
            "boundary_ops": [b[4] for b in ob["boundaries"]],
        }
    base = out["none"]
    for act, v in out.items():
        ratios = "  ".join(
            f"{cls} {v[cls]['wall_ms']:.2f} ms ({v[cls]['wall_ms'] / base[cls]['wall_ms']:.2f}x; "
            f"layers {sum(v[cls]['layers_us']) / sum(base[cls]['layers_us']):.2f}x)"
            for cls in ("fp32", "int8")
        )
        print(f"{act:>10}: {ratios}")
    save("activation_fusion", {"net": SHAPES, "input": HAQ_PREPROCESS["input_size"],
                               "per_activation": out, "argv": sys.argv[1:]})  # fmt: skip


if __name__ == "__main__":
    main()
