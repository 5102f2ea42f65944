"""`--max-jobs`: the uniform configs the cost model is least sure of first, an alternating
config only once both its classes' uniform configs are in, the rest left for a later run."""

from __future__ import annotations

from haq.hardware.ort.budget import select_jobs
from haq.hardware.ort.observation import JobSpec

CLASSES = ("fp32", "int8", "int8-weights")


def _plans(model: str = "m") -> list:
    labels = [f"uniform:{c}" for c in CLASSES]
    labels += [f"alt:{a}/{b}" for a in CLASSES for b in CLASSES if a != b]
    plans = []
    for label in labels:
        a, _, b = label.partition(":")[2].partition("/")
        kernels = (a, b or a, a)
        plans.append((model, label, kernels, [JobSpec(model, label, kernels, 1)]))
    return plans


def _chosen(plans: list) -> list[str]:
    return [label for _, label, _, jobs in plans for _ in jobs]


def test_least_sure_uniform_first_then_alternating_of_chosen_classes() -> None:
    unsure = {"fp32": 5.0, "int8": 50.0, "int8-weights": 20.0}
    plans, left = select_jobs(_plans(), 3, lambda specs, c, t: unsure[c], {"m": []},
                              lambda m, t, c: False)  # fmt: skip
    assert _chosen(plans) == ["uniform:int8", "uniform:int8-weights", "uniform:fp32"]
    assert left == 6
    plans, left = select_jobs(_plans(), 5, lambda specs, c, t: unsure[c], {"m": []},
                              lambda m, t, c: False)  # fmt: skip
    # the two alternating configs of the two least known classes follow the uniform ones
    assert _chosen(plans)[3:] == ["alt:int8/int8-weights", "alt:int8-weights/int8"]
    assert left == 4


def test_an_alternating_config_waits_for_its_uniform_configs() -> None:
    unsure = {"fp32": 0.0, "int8": 1.0, "int8-weights": 1.0}
    # one job: the best uniform config; no alternating config has both its classes in
    plans, left = select_jobs(_plans(), 2, lambda specs, c, t: unsure[c], {"m": []},
                              lambda m, t, c: False)  # fmt: skip
    assert all(label.startswith("uniform:") for label in _chosen(plans))
    # with the uniform configs already measured (a resumed run), alternating ones are free to go
    rest = [p for p in _plans() if not p[1].startswith("uniform:")]
    plans, left = select_jobs(rest, 2, None, {"m": []}, lambda m, t, c: True)
    assert len(_chosen(plans)) == 2 and left == 4
