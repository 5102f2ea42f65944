"""User-facing errors (one line naming the problem and the fix; the CLI exits 2 on them) and
warnings, torch-free so the CLI can name them without importing a model."""


class HaqError(Exception):
    """A problem with the user's input (model, data, config, target), not a bug in haq."""


class RandomWeightsWarning(UserWarning):
    """The model runs with random weights, so its accuracy means nothing."""
