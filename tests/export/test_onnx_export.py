"""Exported QDQ models run in ONNX Runtime with the configured precisions and match haq's
simulation (real ORT sessions on the embedded digits model)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from haq import BitConfig
from haq.cli import main
from haq.data import load_data
from haq.evaluate import predict
from haq.export.onnx_export import export_onnx
from haq.models import load_model
from haq.quant import Quantizer, QuantSettings
from haq.runtime.machine import has_vnni
from haq.runtime.ort import executed_ops, make_session

INT8_OPS = {"QLinearConv", "QGemm"}
exact_int8 = pytest.mark.skipif(
    not has_vnni(),
    reason="this CPU has no VNNI: ORT's u8s8 kernels saturate int16 pair sums there, so int8 "
    "outputs are not the exact integer result haq simulates (parity holds on VNNI CPUs)",
)


@pytest.fixture(scope="module")
def digits() -> tuple[Quantizer, torch.Tensor]:
    loaded = load_model("digits_cnn")
    calib = load_data("digits:calib", loaded.preprocess, limit=256)
    test = load_data("digits", loaded.preprocess)
    return Quantizer(loaded.model, loaded.example_input(), calibration_images=calib.x), test.x


def _ort_logits(data: bytes, x: torch.Tensor) -> np.ndarray:
    sess = make_session(data, threads=1)
    return np.concatenate(
        [sess.run(None, {"input": x[i : i + 1].numpy()})[0] for i in range(len(x))]
    )


PATTERNS = {
    "fp32": "fp32",
    "int8": "w8a8",
    "mixed": {
        "conv1": "fp32",
        "conv2": "w8a8",
        "conv3_dw": "w8a8",
        "conv4_pw": "fp32",
        "fc1": "w8a8",
        "fc2": "w8a8",
    },
    "weight_only_linear": {
        "conv1": "fp32",
        "conv2": "fp32",
        "conv3_dw": "fp32",
        "conv4_pw": "fp32",
        "fc1": "w8a32",
        "fc2": "w4a32",
    },  # fmt: skip
    "low_bit_grid": "w4a6",
}


@pytest.mark.parametrize(
    "pattern",
    [pytest.param(p, marks=exact_int8) if p in ("int8", "mixed") else p for p in PATTERNS],
)
def test_parity_with_simulation(digits, pattern: str) -> None:
    q, x = digits
    spec = PATTERNS[pattern]
    config = BitConfig(spec) if isinstance(spec, dict) else BitConfig.from_spec(spec)
    data, report = export_onnx(q, config)
    ort_out = _ort_logits(data, x)
    sim = predict(q.apply(config), x).numpy()
    agreement = float((ort_out.argmax(1) == sim.argmax(1)).mean())
    assert agreement >= 0.995
    sim_model = q.apply(config)
    # At most a couple of output-grid steps apart (ORT requantizes with its own rounding).
    tol = 2.5 * (getattr(sim_model.fc2, "out_scale", None) or 0.0) + 1e-4
    assert float(np.abs(ort_out - sim).max()) <= tol
    if pattern == "fp32":
        assert set(report.layers.values()) == {"float"}


def test_optimized_graph_runs_configured_kernels(digits) -> None:
    q, _ = digits
    config = BitConfig(PATTERNS["mixed"])
    data, report = export_onnx(q, config)
    ops = executed_ops(data)
    by_layer: dict[str, set[str]] = {}
    for row in ops.itertuples():
        if row.layer is not None:
            by_layer.setdefault(row.layer, set()).add(row.op_type)
    for name, precision in config.items():
        kernels = by_layer.get(name, set())
        if precision.is_float:
            assert not kernels & INT8_OPS, f"{name} must stay float, ran {kernels}"
            assert kernels, f"{name} vanished from the optimized graph"
        else:
            assert kernels & INT8_OPS, f"{name} must run an int8 kernel, ran {kernels}"
    assert report.counts() == {"float": 2, "int8": 4}


def test_export_is_deterministic_and_tagged(digits, tmp_path) -> None:
    q, _ = digits
    a, _ = export_onnx(q, "w8a8", tmp_path / "a.onnx")
    b, _ = export_onnx(q, "w8a8")
    assert a == b == (tmp_path / "a.onnx").read_bytes()
    model = onnx.load_from_string(a)
    meta = {p.key: p.value for p in model.metadata_props}
    assert set(json.loads(meta["haq.layers"]).values()) == set(q.layer_names)
    assert BitConfig.from_dict(json.loads(meta["haq.config"])) == q.resolve("w8a8")


def test_weight_only_stores_int8(digits) -> None:
    q, _ = digits
    fp32, _ = export_onnx(q, "fp32")
    w8, report = export_onnx(q, "w8a32")
    assert set(report.layers.values()) == {"int8-weights"}
    assert len(w8) < 0.5 * len(fp32)


def test_cli_export_and_errors(tmp_path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", "digits_cnn", "--bits", "w8a8", "--calib-data", "digits:calib",
                 "--calib-limit", "64", "-o", str(out), "--json"]) == 0  # fmt: skip
    info = json.loads(capsys.readouterr().out)
    assert info["layers"] == {"int8": 6} and out.is_file()

    other = tmp_path / "other.yaml"
    other.write_text("default: w8a8\nlayers: {layer1.0.conv1: w4a8}\n")  # a resnet config
    cases = [
        ["--bits", str(other), "--calib-data", "digits:calib"],  # config for another model
        ["--bits", "w8a8"],  # activations without calibration data
        ["--bits", "w8a8", "--calib-data", str(tmp_path / "missing")],  # missing data dir
        ["--bits", "w9a1"],  # bits the backend cannot represent
        [
            "--bits",
            "w6a6",
            "--target",
            "gpu-t4",
            "--calib-data",
            "digits:calib",
        ],  # bits the target cannot run
        ["--bits", "w8a8", "--target", "tpu-v9"],  # unknown target
    ]
    for extra in cases:
        code = main(["export", "--model", "digits_cnn", "-o", str(tmp_path / "x.onnx"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("haq: error:") and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "x.onnx").exists()


def test_adaround_export_matches_simulation(digits) -> None:
    """The exported ONNX holds exactly the learned roundings: ORT agrees with the simulation
    (4-bit weights: no int16 saturation on any CPU)."""
    q0, x = digits
    loaded = load_model("digits_cnn")
    calib = load_data("digits:calib", loaded.preprocess, limit=256)
    q = Quantizer(loaded.model, loaded.example_input(), QuantSettings(ptq="cle+adaround", adaround_iterations=200),
                  calibration_images=calib.x)  # fmt: skip
    sim_model = q.apply("w4a8")
    nearest = q0.apply("w4a8")
    assert any(not torch.equal(sim_model.get_submodule(n).w_int, nearest.get_submodule(n).w_int)
               for n in q.layer_names)  # fmt: skip
    data, _ = export_onnx(q, "w4a8")
    ort_out = _ort_logits(data, x)
    sim = predict(sim_model, x).numpy()
    assert float((ort_out.argmax(1) == sim.argmax(1)).mean()) >= 0.995
    assert float(np.abs(ort_out - sim).max()) <= 2.5 * sim_model.fc2.out_scale + 1e-4


def test_export_ptq_needs_calibration(tmp_path, capsys) -> None:
    code = main(["export", "--model", "digits_cnn", "--bits", "w4a32", "--ptq", "adaround",
                 "-o", str(tmp_path / "x.onnx")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--ptq adaround needs calibration images" in err and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


class _Residual(torch.nn.Module):
    """conv-bn-relu, then a block whose input also feeds the residual add, then a conv."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.conv2(self.relu1(self.conv1(x)))
        return self.head(self.conv3(self.relu2(y + x)))


@exact_int8
def test_residual_add_runs_int8_and_matches() -> None:
    torch.manual_seed(0)
    model = _Residual().eval()
    x = torch.randn(64, 3, 8, 8)
    q = Quantizer(model, x[:1], calibration_images=x[:32])
    sim_model = q.apply("w8a8")
    assert sim_model.conv1.input_shared  # the block input is quantized once, for the add too
    data, _ = export_onnx(q, "w8a8")
    ops = set(executed_ops(data)["op_type"])
    assert "QLinearAdd" in ops and "QLinearConv" in ops
    ort_out = _ort_logits(data, x[32:])
    sim = predict(sim_model, x[32:]).numpy()
    assert float((ort_out.argmax(1) == sim.argmax(1)).mean()) >= 0.95
    assert float(np.abs(ort_out - sim).max()) <= 2.5 * sim_model.head[2].out_scale + 1e-4


def test_bias_beyond_int32_saturates_like_the_simulation() -> None:
    """An almost empty activation range (a dead ReLU, a near-constant input) puts the bias
    grid s_act * s_w so fine that the bias leaves int32: saturate, never wrap around."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([1.0, -1.0, 0.5, 0.0]))
    x = torch.randn(8, 3, 6, 6) * 1e-9
    data, _ = export_onnx(Quantizer(model, x[:1], calibration_images=x), "w8a8")
    inits = {
        t.name: onnx.numpy_helper.to_array(t) for t in onnx.load_from_string(data).graph.initializer
    }
    bias = next(v for k, v in inits.items() if k.endswith("bias_quantized"))
    assert bias.dtype == np.int32
    assert bias.tolist() == [2**31 - 1, -(2**31), 2**31 - 1, 0]


def test_config_naming_its_refinement_exports_it(digits, tmp_path, capsys) -> None:
    """A front point's file says which refinement it was scored with; export applies it."""
    q0, x = digits
    config = BitConfig.uniform("w4a8", q0.layer_names).with_ptq("bias-correction")
    sim = predict(q0.apply(config), x).numpy()
    assert not np.array_equal(sim, predict(q0.apply(config.with_ptq(None)), x).numpy())
    data, _ = export_onnx(q0, config)
    ort_out = _ort_logits(data, x)
    assert float((ort_out.argmax(1) == sim.argmax(1)).mean()) >= 0.995
    path = tmp_path / "point.yaml"
    BitConfig.uniform("w4a32", q0.layer_names).with_ptq("bias-correction").save(path)
    code = main(
        ["export", "--model", "digits_cnn", "--bits", str(path), "-o", str(tmp_path / "x.onnx")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--ptq bias-correction needs calibration images" in err, err


class _FloatStemPool(torch.nn.Module):
    """A float stem, a max pool, then two readers of the pooled tensor (ShuffleNet's first
    block, ResNet's first block with its downsample)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.MaxPool2d(3, 2, 1))  # fmt: skip
        self.a = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.b = torch.nn.Conv2d(16, 16, 1)
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(torch.relu(self.a(x)) + torch.relu(self.b(x)))


def _pool_input_ops(data: bytes) -> list[str]:
    """Op type of what feeds each MaxPool in ORT's optimized graph (QuantizeLinear: uint8)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "opt.onnx"
        make_session(data, threads=1, optimized_model_path=opt)
        nodes = onnx.load(str(opt)).graph.node
    made_by = {o: n.op_type for n in nodes for o in n.output}
    return [made_by.get(n.input[0], "input") for n in nodes if "MaxPool" in n.op_type]


@pytest.mark.parametrize("readers", [("fp32", "w8a8"), ("w8a8", "w8a8")])
def test_float_stem_pool_stays_float_and_exact(readers: tuple[str, str], monkeypatch) -> None:
    """ORT moves an int8 reader's Q in front of a float layer's max pool and runs the pool on
    uint8 in NCHW, 16-33x slower; the exporter's Clip keeps the pool float, same values."""
    from haq.export.graph import GraphEditor

    torch.manual_seed(0)
    x = torch.randn(24, 3, 16, 16)
    q = Quantizer(_FloatStemPool().eval(), x[:1], calibration_images=x[:16])
    config = BitConfig({"stem.0": "fp32", "a": readers[0], "b": readers[1]})
    data, _ = export_onnx(q, config)
    graph = onnx.load_from_string(data).graph
    assert any(n.op_type == "Clip" and n.name.endswith("_pool_guard_Clip") for n in graph.node)
    assert "QuantizeLinear" not in _pool_input_ops(data)
    monkeypatch.setattr(GraphEditor, "keep_max_pools_float", lambda self, nodes: nodes)
    plain, _ = export_onnx(q, config)  # the graph ORT slowed down
    assert "QuantizeLinear" in _pool_input_ops(plain)  # what the guard prevents
    np.testing.assert_array_equal(_ort_logits(data, x[16:]), _ort_logits(plain, x[16:]))


def test_int8_stem_pool_is_not_guarded() -> None:
    """After an int8 layer the pool reads a DequantizeLinear: ORT runs it on uint8 in NHWC
    (fast) and nothing is inserted."""
    torch.manual_seed(0)
    x = torch.randn(16, 3, 16, 16)
    q = Quantizer(_FloatStemPool().eval(), x[:1], calibration_images=x)
    data, _ = export_onnx(q, "w8a8")
    assert not any(
        n.name.endswith("_pool_guard_Clip") for n in onnx.load_from_string(data).graph.node
    )
