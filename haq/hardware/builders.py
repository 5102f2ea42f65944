"""How each shipped target's tables are made: one `TargetBuilder` per target, registered by id.

A builder writes the target's latency table(s) (and, where haq owns it, its profile YAML)
under an output folder laid out like ``hardware_profiles/`` (``<out>/<id>/layers.csv``,
``<out>/<id>.yaml``), from haq code alone; the experiments that regenerate the shipped files
are thin callers that add their own checks and summaries. Its ``provenance`` is the one its
profile YAML states (measured / simulated / published), which the conformance suite
(`haq.testing.targets`) checks.

- ``cpu-avx512``: measured in ONNX Runtime on this machine (`haq.hardware.ort.jobs`, what
  ``haq profile`` runs);
- ``npu-*``: simulated by the analytic cycle models (`haq.hardware.simulators.files`);
- ``gpu-t4``: HAWQ-V3's published per-layer latencies (`haq.hardware.published_t4`);
- ``gpu-h100``: measured with torch on a CUDA device (`haq.hardware.torch_gpu_jobs`, the
  harness ``experiments/profile_gpu_h100.py`` calls); on a machine without one the build is a
  one-line error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from haq.errors import HaqError
from haq.hardware.simulators import TARGETS as SIMULATED


@dataclass(frozen=True)
class BuiltTarget:
    """What one build wrote: the files, the layer table and the builder's own detail."""

    target: str
    provenance: str
    files: tuple[Path, ...]
    layers: Any  # pd.DataFrame of the layer table written
    detail: Any = field(default=None, compare=False)


class TargetBuilder(Protocol):
    target: str
    provenance: str  # measured | simulated | published: what its profile YAML states

    def build(self, out: Path, models: Sequence[str] | None = None, **options: Any) -> BuiltTarget:
        """Write the target's tables under ``out`` (laid out like ``hardware_profiles/``)."""
        ...


class SimulatedNpu:
    """A bit-flexible NPU's table and YAML from its analytic simulator and preset."""

    provenance = "simulated"

    def __init__(self, target: str) -> None:
        self.target = target

    def build(self, out: Path, models: Sequence[str] | None = None, *, batch: int = 1,
              date: str | None = None, argv: Sequence[str] = ()) -> BuiltTarget:  # fmt: skip
        from haq.hardware.simulators.files import MODELS, write_target

        date = date or datetime.now(UTC).isoformat(timespec="seconds")
        frame, files = write_target(SIMULATED[self.target], Path(out), list(models or MODELS),
                                    batch, date, argv)  # fmt: skip
        return BuiltTarget(self.target, self.provenance, tuple(files), frame)


class PublishedT4:
    """The T4's table from HAWQ-V3's published per-layer latencies (``source=`` the CSV)."""

    target = "gpu-t4"
    provenance = "published"

    def build(self, out: Path, models: Sequence[str] | None = None, *,
              source: str | Path | None = None) -> BuiltTarget:  # fmt: skip
        from haq.hardware.published_t4 import build_t4_tables

        if models not in (None, ["resnet18"], ("resnet18",)):
            raise HaqError("gpu-t4 is built from published resnet18 rows only; drop --models")
        if source is None:
            raise HaqError("gpu-t4 needs source=<hawq_v3_t4_resnet18.csv> (HAWQ-V3's numbers)")
        built = build_t4_tables(Path(out) / self.target, Path(source))
        return BuiltTarget(self.target, self.provenance, tuple(built.files), built.layers, built)


class OrtProfiled:
    """cpu-avx512's tables measured in ONNX Runtime here (what ``haq profile`` runs)."""

    target = "cpu-avx512"
    provenance = "measured"

    def build(self, out: Path, models: Sequence[str] | None = None, **options: Any) -> BuiltTarget:
        from haq.hardware.ort.jobs import profile_target

        if not models:
            raise HaqError("cpu-avx512 measures the models it is given; pass models=[...]")
        out = Path(out)
        report = profile_target(models, target=self.target, directory=out / self.target,
                                profile_yaml=out / f"{self.target}.yaml", **options)  # fmt: skip
        d = report.directory
        files = tuple(p for p in sorted(d.iterdir()) if p.is_file()) + (
            out / f"{self.target}.yaml",
        )
        layers = report.tables.layers if report.tables is not None else None
        return BuiltTarget(self.target, self.provenance, files, layers, report)


class TorchGpu:
    """gpu-h100's tables measured with torch on this machine's CUDA device (options: the
    fields of `GpuProfileOptions`, e.g. ``device="cpu"`` for a smoke run, ``time_budget``)."""

    target = "gpu-h100"
    provenance = "measured"

    def build(self, out: Path, models: Sequence[str] | None = None, *,
              script: str = "haq.hardware.builders.TorchGpu", argv: Sequence[str] = (),
              **options: Any) -> BuiltTarget:  # fmt: skip
        from haq.hardware.torch_gpu_files import layers_frame
        from haq.hardware.torch_gpu_jobs import GpuProfileOptions, profile_gpu, torch_device

        if models is not None:
            options["models"] = tuple(models)
        opts = GpuProfileOptions(**options)
        torch_device(opts.device)  # fail before writing anything when there is no CUDA
        directory = Path(out) / self.target
        state = profile_gpu(directory, opts, script=script, argv=argv)
        files = tuple(p for p in sorted(directory.iterdir()) if p.is_file())
        return BuiltTarget(self.target, self.provenance, files, layers_frame(state.rows), state)


BUILDERS: dict[str, Callable[[], TargetBuilder]] = {
    "cpu-avx512": OrtProfiled,
    "gpu-h100": TorchGpu,
    "gpu-t4": PublishedT4,
    **{t: functools.partial(SimulatedNpu, t) for t in SIMULATED},
}


def get_builder(target: str) -> TargetBuilder:
    """The builder of ``target``; a one-line error naming the known ones."""
    if target not in BUILDERS:
        raise HaqError(f"no builder for target {target!r}; known: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[target]()
