"""User-facing errors: one line naming the problem and the fix; the CLI exits 2 on them."""


class HaqError(Exception):
    """A problem with the user's input (model, data, config, target), not a bug in haq."""
