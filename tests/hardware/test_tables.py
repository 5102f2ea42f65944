"""Latency table I/O: de-duplication keys, glue validation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from haq.hardware.tables import read_table, write_table
from tests.cost.synthetic import table


def test_write_table_keeps_rows_of_other_thread_counts(tmp_path: Path) -> None:
    frame = table()  # every row at 1 and 2 threads
    doubled = pd.concat([frame, frame.assign(latency_us=frame["latency_us"] + 1)])
    write_table(doubled, tmp_path / "layers.csv")
    back = read_table(tmp_path / "layers.csv")
    assert len(back) == len(frame)  # re-measured rows replace theirs, thread counts both kept
    assert sorted(back["latency_us"]) == sorted(frame["latency_us"] + 1)
