"""haq.progress: one way every long step reports (plain lines, quiet, JSON lines)."""

from __future__ import annotations

import json

import pytest

from haq import progress


@pytest.fixture(autouse=True)
def _auto() -> None:
    yield
    progress.configure("auto")


def test_plain_lines_start_at_once_and_end_with_the_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress.configure("auto")  # stderr is not a TTY under pytest: plain lines
    with progress.task("calibrating", 3, "batches") as t:
        for _ in range(3):
            t.advance()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "calibrating: 3 batches"
    assert lines[-1].startswith("calibrating: 3/3 batches  elapsed 0s  ETA 0s")
    assert len(lines) == 2  # quick steps: no line in between (one every PLAIN_EVERY_S)


def test_json_and_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    progress.configure("json")
    with progress.task("sensitivity", 2, "layer choices") as t:
        t.advance(2)
    progress.emit("note", "a note", target="cpu-avx512")
    events = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [e["event"] for e in events] == ["start", "progress", "note"]
    assert (
        events[1]["done"] == 2 and events[1]["total"] == 2 and events[2]["target"] == "cpu-avx512"
    )
    assert (
        events[2]["message"] == "a note" and events[0]["message"] == "sensitivity: 2 layer choices"
    )
    progress.configure("quiet")
    with progress.task("x", 1) as t:
        t.advance()
    progress.emit("note", "hidden")
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="one of"):
        progress.configure("loud")


def test_a_lazy_step_is_silent_when_quick_and_says_so_when_slow(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    with progress.task("quick", 2, "batches", lazy=True) as t:
        t.advance(2)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress, "LAZY_S", 0.05)
    with progress.task("slow", 2, "batches", lazy=True) as t:
        time.sleep(0.2)
        t.advance(2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "slow: 2 batches" and lines[-1].startswith("slow: 2/2 batches")
