"""Pareto utilities for the search: dominance, non-dominated sorting, exact hypervolume and a
``Front`` table. Independent of the rest of haq apart from atomic writes."""

from haq.pareto.front import Front
from haq.pareto.hypervolume import default_reference, hypervolume
from haq.pareto.sorting import (
    DIRECTIONS,
    as_minimization,
    dominates,
    domination_matrix,
    non_dominated_mask,
    non_dominated_sort,
    validate_directions,
)

__all__ = [
    "DIRECTIONS",
    "Front",
    "as_minimization",
    "default_reference",
    "dominates",
    "domination_matrix",
    "non_dominated_mask",
    "non_dominated_sort",
    "hypervolume",
    "validate_directions",
]
