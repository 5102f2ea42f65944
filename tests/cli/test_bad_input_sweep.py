"""Bad input across the CLI, as a user meets it: the real `haq` in a subprocess answers every
case below with exit 2 and ONE line ``haq: error: ...`` (no traceback), and leaves what is on
disk as it was: a finished search's files, the inputs, an old file a write would replace.

Read-only directories and a full disk are real, not mocked: a read-only directory is chmod
(under root, which chmod does not stop, the child first drops CAP_DAC_OVERRIDE), and a full
disk is RLIMIT_FSIZE, past which a write fails with EFBIG (root included).
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Case:
    argv: str  # split on spaces; {run} {in} {tmp} are filled in (see `_fill`)
    expect: str  # a piece of the error line: the right check fired
    setup: str | None = None  # a key of `SETUPS`: the state the case needs under {tmp}
    limit: str | None = None  # "read-only" (the setup's dirs unwritable) or "disk-full"


S = "search --workers 0 -q --budget 3"  # a search that fails in set-up, before any trial
CASES: dict[str, Case] = {
    # haq search
    "search-unknown-model": Case(f"{S} --model resnet9000 --out {{tmp}}/o", "unknown model"),
    "search-unknown-target": Case(f"{S} --target tpu-9000 --out {{tmp}}/o", "unknown target"),
    "search-unknown-objective": Case(f"{S} --objectives top1,speed --out {{tmp}}/o", "unknown objective"),
    "search-budget-zero": Case("search --budget 0 --out {tmp}/o", "--budget must be at least 1"),
    "search-budget-not-a-number": Case("search --budget three", "invalid int value"),
    "search-time-limit-text": Case(f"{S} --time-limit soon --out {{tmp}}/o", "not a duration"),
    "search-missing-data-dir": Case(f"{S} --data {{in}}/nope --calib-data digits:calib --out {{tmp}}/o", "not found"),
    "search-empty-data-dir": Case(f"{S} --calib-data {{in}}/empty --out {{tmp}}/o", "holds no images"),
    "search-more-classes-than-model": Case(f"{S} --calib-data {{in}}/eleven --out {{tmp}}/o", "11 classes"),
    "search-corrupt-weights": Case(f"{S} --weights {{in}}/corrupt.pt --out {{tmp}}/o", "cannot read weights"),
    "search-weights-of-other-architecture": Case(f"{S} --weights {{in}}/linear.pt --out {{tmp}}/o", "do not fit digits_cnn"),
    "search-pin-without-precision": Case(f"{S} --pin conv1 --out {{tmp}}/o", "needs a precision"),
    "search-pin-unknown-precision": Case(f"{S} --pin conv1=w9a9x --out {{tmp}}/o", "cannot read precision"),
    "search-tie-unknown-layer": Case(f"{S} --tie conv1,nosuch --out {{tmp}}/o", "matches no layer"),
    "search-unknown-driver": Case(f"{S} --driver annealing --out {{tmp}}/o", "unknown driver"),
    "search-driver-opt-not-key-value": Case(f"{S} --driver-opt speed --out {{tmp}}/o", "KEY=VALUE"),
    "search-malformed-space-yaml": Case(f"{S} --space {{in}}/bad_space.yaml --out {{tmp}}/o", "not valid YAML"),
    "search-eval-cache-not-sqlite": Case(f"{S} --eval-cache {{in}}/bad.yaml --out {{tmp}}/o", "not a usable SQLite"),
    "search-resume-dir-without-search": Case(f"{S} --resume {{in}}/not_a_run", "nothing to resume"),
    "search-out-holds-a-search": Case(f"{S} --out {{run}}", "already holds a search"),
    "search-resume-with-other-out": Case(f"{S} --resume {{run}} --out {{tmp}}/o", "drop --out"),
    "search-out-is-a-file": Case(f"{S} --out {{in}}/bad.yaml", "is a file, not a directory"),
    "search-out-in-read-only-parent": Case(f"{S} --out {{tmp}}/ro/new", "cannot write in", "ro-parent", "read-only"),
    "search-out-read-only-empty-dir": Case(f"{S} --out {{tmp}}/ro", "cannot write in", "ro-parent", "read-only"),
    "search-resume-read-only-run": Case("search --workers 0 -q --resume {tmp}/copy", "cannot write in", "ro-copy", "read-only"),
    "search-asymmetric-on-a-cnn": Case(f"{S} --weight-only-mapping asymmetric --out {{tmp}}/o", "asymmetric weights apply to group-wise"),
    "search-text-group-size-not-power-of-two": Case(f"{S} --model minilm --tokens 8 --group-size 24 --out {{tmp}}/o", "power of two >= 16"),
    "search-resume-disk-full": Case("search --workers 0 -q --resume {tmp}/copy", "cannot write the study", "copy", "disk-full"),
    # haq eval
    "eval-unknown-precision": Case("eval --model digits_cnn --bits int3", "neither a precision"),
    "eval-asymmetric-without-groups": Case("eval --model digits_cnn --bits w4a32 --weight-only-mapping asymmetric", "asymmetric weights apply to group-wise"),
    "eval-more-classes-than-model": Case("eval --model digits_cnn --data {in}/eleven", "11 classes"),
    # haq export
    "export-config-file-missing": Case("export --model digits_cnn --bits {in}/nope.yaml -o {tmp}/m.onnx", "not found"),
    "export-config-malformed-yaml": Case("export --model digits_cnn --bits {in}/bad.yaml -o {tmp}/m.onnx", "not valid YAML"),
    "export-output-parent-missing": Case("export --model digits_cnn --bits w4a32 -o {tmp}/no/such/m.onnx", "does not exist"),
    # haq bench
    "bench-missing-model-file": Case("bench {in}/nope.onnx", "no such file"),
    "bench-not-an-onnx-file": Case("bench {in}/bad.onnx", "not a loadable ONNX"),
    "bench-runs-zero": Case("bench {in}/bad.onnx --runs 0", "--runs must be at least 1"),
    # haq cost
    "cost-unknown-precision": Case("cost --target cpu-avx512 --model digits_cnn --bits w99a8", "neither a precision"),
    "cost-kernel-map-not-from-to": Case("cost --target cpu-avx512 --model digits_cnn --kernel-map fp32", "not FROM=TO"),
    # haq profile
    "profile-unknown-target": Case("profile --target tpu-9000 --model digits_cnn", "unknown target"),
    "profile-threads-not-integers": Case("profile --target cpu-avx512 --model digits_cnn --threads two", "comma-separated integers"),
    # haq report
    "report-dir-not-a-run": Case("report {in}/not_a_run", "not a haq results directory"),
    "report-output-parent-missing": Case("report {run} -o {tmp}/no/such/r.html", "does not exist"),
    "report-output-is-a-dir": Case("report {run} -o {in}/empty", "is a directory"),
    "report-disk-full-keeps-old-file": Case("report {run} -o {tmp}/old.html", "File too large", "old-report", "disk-full"),
    # haq space, haq measure
    "space-unknown-search-space": Case("space --model digits_cnn --space nosuch", "unknown search space"),
    "space-pin-unknown-layer": Case("space --model digits_cnn --pin nosuch=w8a8", "matches no layer"),
    "measure-dir-not-a-run": Case("measure {in}/not_a_run", "no finished search"),
    "measure-run-without-target": Case("measure {run}", "needs a --target"),
}  # fmt: skip

DISK_LIMIT = 1000  # bytes a file may grow to under "disk-full": less than any result file


def _copy_run(run: Path, tmp: Path) -> list[Path]:
    shutil.copytree(run, tmp / "copy")
    return [tmp / "copy"]


def _ro_parent(run: Path, tmp: Path) -> list[Path]:
    (tmp / "ro").mkdir()
    return [tmp / "ro"]


def _old_report(run: Path, tmp: Path) -> list[Path]:
    (tmp / "old.html").write_text("<p>the report of yesterday</p>\n")
    return []


# each returns the directories that "read-only" makes unwritable (with all they hold)
SETUPS: dict[str, Callable[[Path, Path], list[Path]]] = {
    "copy": _copy_run, "ro-copy": _copy_run, "ro-parent": _ro_parent, "old-report": _old_report,
}  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The session's cache and table overlay (conftest's), one thread (a shared machine)."""
    base = tmp_path_factory.getbasetemp()
    return dict(os.environ, HAQ_CACHE_DIR=str(base / "haq-cache"),
                HAQ_OVERLAY_DIR=str(base / "haq-overlay"), OMP_NUM_THREADS="1")  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """One finished small search, made once: cases run against it must leave it unchanged."""
    out = tmp_path_factory.mktemp("sweep") / "run"
    argv = [sys.executable, "-m", "haq", *f"{S} --out {out}".split()]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bad files and folders of each kind the cases pass."""
    import numpy as np
    import torch
    from PIL import Image

    d = tmp_path_factory.mktemp("inputs")
    (d / "empty").mkdir()
    for c in range(11):  # digits_cnn predicts 10 classes
        folder = d / "eleven" / f"c{c:02d}"
        folder.mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 20 * c, np.uint8)).save(folder / "a.png")
    (d / "corrupt.pt").write_bytes(b"\x00 not a checkpoint " * 8)
    torch.save(torch.nn.Linear(3, 4).state_dict(), d / "linear.pt")
    (d / "bad.yaml").write_text("default: w8a8\nlayers: {conv1: [w4a8\n")
    (d / "bad_space.yaml").write_text("candidates: {conv: [w8a8\n")
    (d / "bad.onnx").write_bytes(b"not a protobuf")
    (d / "not_a_run").mkdir()
    (d / "not_a_run" / "notes.txt").write_text("nothing haq wrote\n")
    return d


def _snapshot(*roots: Path) -> dict[Path, bytes]:
    """Every file under ``roots`` and its bytes."""
    files = (p for r in roots if r.exists() for p in sorted(r.rglob("*")))
    return {p: p.read_bytes() for p in files if p.is_file()}


def _fill(argv: str, run: Path, inputs: Path, tmp: Path) -> list[str]:
    return [a.format(run=run, tmp=tmp, **{"in": inputs}) for a in argv.split(" ")]


def _drop_dac_override() -> None:
    """preexec_fn: root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (dropped from the
    bounding set, so the exec'd interpreter lacks them) obeys file modes like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _can_drop_dac_override() -> bool:
    try:
        subprocess.run(["true"], preexec_fn=_drop_dac_override, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _disk_full() -> None:
    """preexec_fn: writes past DISK_LIMIT bytes fail with EFBIG (not SIGXFSZ), as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (DISK_LIMIT, DISK_LIMIT))


def _preexec(limit: str | None) -> Callable[[], None] | None:
    if limit == "disk-full":
        return _disk_full
    if limit == "read-only" and os.geteuid() == 0:
        if not _can_drop_dac_override():
            pytest.skip("root ignores chmod, and this root cannot drop CAP_DAC_OVERRIDE "
                        "(no CAP_SETPCAP); the disk-full cases cover the write-failure path")  # fmt: skip
        return _drop_dac_override
    return None


def _chmod_tree(roots: list[Path], writable: bool) -> None:
    for root in roots:
        for p in [root, *root.rglob("*")]:
            mode = p.stat().st_mode
            p.chmod(mode | 0o200 if writable else mode & ~0o222)


def haq(argv: list[str], env: dict[str, str], preexec: Callable[[], None] | None = None
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = [sys.executable, "-m", "haq", *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=preexec, stdin=subprocess.DEVNULL)  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess[str], expect: str) -> str:
    err = proc.stderr
    assert "Traceback" not in err + proc.stdout, err[-3000:]
    assert proc.returncode == 2, f"exit {proc.returncode}: {err[-3000:]}"
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert lines[0].startswith("haq: error: ") and len(lines[0]) > len("haq: error: "), err
    assert expect in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_line_exit_2(case: Case, run: Path, inputs: Path, env: dict[str, str],
                                      tmp_path: Path) -> None:  # fmt: skip
    locked = SETUPS[case.setup](run, tmp_path) if case.setup else []
    kept = _snapshot(run, inputs, tmp_path)  # what nothing may change or lose
    preexec = _preexec(case.limit)
    if case.limit == "read-only":
        _chmod_tree(locked, writable=False)
    try:
        proc = haq(_fill(case.argv, run, inputs, tmp_path), env, preexec)
    finally:
        _chmod_tree(locked, writable=True)
    line = assert_one_line_error(proc, case.expect)
    if case.limit is not None:  # the line names where and what to do
        assert str(tmp_path) in line and ("writable" in line or "free disk space" in line), line
    after = _snapshot(run, inputs, tmp_path)
    changed = [str(p) for p, data in kept.items() if after.get(p) != data]
    assert not changed, f"changed or lost: {changed}"
    assert not [p for p in after if p.name.endswith(".tmp")], "a temporary file was left behind"


# The atomic writers themselves (haq.io), in a child that hits a real limit -----------------
WRITE = ("import sys\nfrom haq.errors import HaqError\nfrom haq.io import atomic_write_text\n"
         "try:\n    atomic_write_text(sys.argv[1], 'new ' * 1000)\nexcept HaqError as e:\n"
         "    print(e, file=sys.stderr)\n    sys.exit(2)\n")  # fmt: skip


@pytest.mark.parametrize("limit", ["disk-full", "read-only"])
def test_atomic_write_refused_keeps_the_old_file(limit: str, tmp_path: Path,
                                                 env: dict[str, str]) -> None:  # fmt: skip
    target = tmp_path / "d" / "results.json"
    target.parent.mkdir()
    target.write_text("old\n")
    preexec = _preexec(limit)
    if limit == "read-only":
        _chmod_tree([target.parent], writable=False)
    try:
        proc = subprocess.run([sys.executable, "-c", WRITE, str(target)], env=env, text=True,
                              capture_output=True, timeout=60, preexec_fn=preexec)  # fmt: skip
    finally:
        _chmod_tree([target.parent], writable=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    reason = "File too large" if limit == "disk-full" else "Permission denied"
    assert proc.stderr.startswith(f"cannot write {target} ({reason}); "), proc.stderr
    assert proc.stderr.count("\n") == 1
    assert target.read_text() == "old\n" and os.listdir(target.parent) == ["results.json"]
