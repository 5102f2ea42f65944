"""Conformance suites shipped with the package (as ``optuna.testing`` does): a new plugin
(driver, cost model, target, executor) passes its kind's suite by being registered. Also the
headless browser (`browser`) that checks reports as a person sees them."""
