"""Names of the post-training refinements (torch-free: configs and options carry them).

A refinement set is ``none`` or methods joined by ``+``, applied in `PTQ_METHODS` order; each
set has one canonical spelling so that it can key caches and config hashes.
"""

from __future__ import annotations

from haq.errors import HaqError

PTQ_METHODS = ("cle", "adaround", "gptq", "bias-correction")  # also the order they are applied in
#: Methods that each choose the integer weights: at most one per set.
ROUNDING_METHODS = ("adaround", "gptq")


def canonical_ptq(spec: str) -> str:
    """``'adaround+cle'`` -> ``'cle+adaround'``: one spelling per method set (cache keys)."""
    steps = {p.strip() for p in spec.lower().split("+") if p.strip()} - {"none"}
    unknown = steps - set(PTQ_METHODS)
    if unknown:
        raise HaqError(
            f"unknown PTQ method {sorted(unknown)[0]!r}; use none or methods joined by '+' "
            f"from {', '.join(PTQ_METHODS)} (e.g. cle+adaround)"
        )
    if len(steps & set(ROUNDING_METHODS)) > 1:
        raise HaqError(f"--ptq {spec!r}: adaround and gptq both choose the integer weights; "
                       "use one of them")  # fmt: skip
    return "+".join(m for m in PTQ_METHODS if m in steps) or "none"


def ptq_choices(spec: str) -> tuple[str, ...]:
    """``'none,adaround'`` -> the refinement sets a search may choose per candidate (the
    first one is its default); duplicates after canonical spelling are dropped."""
    out: list[str] = []
    for part in spec.split(","):
        if not part.strip():
            raise HaqError(f"--ptq {spec!r} has an empty choice; write e.g. none,adaround")
        method = canonical_ptq(part)
        if method not in out:
            out.append(method)
    return tuple(out)
