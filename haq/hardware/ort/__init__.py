"""``haq profile`` for the ``cpu-avx512`` target: in-graph ONNX Runtime latency tables.

Every number comes from whole models as ORT runs them (fusions, layouts and all), never from
one-layer models. One job per module:

- `target`: kernel classes, precision rules, boundaries, the profile YAML it writes;
- `jobs`: plan the (model, config, threads) jobs, export each, record them; resumable;
- `observation`: one job measured: its wall time and attributed node times, as a record;
- `attribution`: one profiled run's node times -> layers and boundaries;
- `aggregation`: observations -> layer / transition / glue tables (the latency model);
- `files`: the observations and tables on disk (read, derive and write atomically).
"""
