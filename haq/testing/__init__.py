"""Conformance suites shipped with the package (as ``optuna.testing`` does): a new plugin
(driver, cost model, target, executor) passes its kind's suite by being registered."""
