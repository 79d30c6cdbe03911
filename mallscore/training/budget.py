"""How much work one training run does: the full budget for real runs, a quick one for tests.

The budget changes how many configurations, folds, repeats and resamples are
used, never what is computed; the card records which budget produced a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mallscore.errors import UsageError


@dataclass(frozen=True)
class Budget:
    """Counts that trade run time for precision."""

    name: str
    n_c_values: int = 13  # C in logspace(-3, 3, n_c_values)
    cv_splits: int = 5  # stratified folds of the search and of the out-of-fold predictions
    cv_repeats: int = 5  # repeats of the stratified k-fold evaluation
    nested_outer: int = 5  # outer folds of nested cross-validation
    bootstrap: int = 500  # resamples for the odds-ratio intervals
    parity_rows: int = 10_000  # synthetic rows across the feature ranges, plus the training rows
    n_jobs: int = 2
    search_rows: int | None = 2_000  # the grid search's sample of its training rows (None: all; see search.py)
    seed: int = 42

    def as_dict(self) -> dict:
        """The budget as written into the card."""
        return asdict(self)


FULL = Budget("full")
QUICK = Budget(
    "quick", n_c_values=3, cv_splits=3, cv_repeats=2, nested_outer=3, bootstrap=40, parity_rows=10_000, n_jobs=1
)
BUDGETS = {b.name: b for b in (FULL, QUICK)}


def get_budget(name: str) -> Budget:
    """The budget called ``name`` (``full`` or ``quick``)."""
    try:
        return BUDGETS[name]
    except KeyError:
        raise UsageError(f"unknown training budget {name!r}; use one of: {', '.join(BUDGETS)}") from None
