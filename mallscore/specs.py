"""Model specs, declared in one place: which warehouse columns a model reads and how it is built.

A spec names columns of the SQL feature table (``features_customer``) and of the
training view (``training_set``); no feature is ever recomputed in Python. The
pipeline itself (preprocessing + logistic regression and its search grid) is
built by :mod:`mallscore.training.tuning` from the spec's ``family`` and
``preprocessing`` choices, so this module stays free of scikit-learn: the
scoring path imports it.

Adding a spec is a few lines: declare a :class:`ModelSpec` and add it to
``SPECS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mallscore.errors import UsageError

LABEL = "high_spender"


@dataclass(frozen=True)
class Feature:
    """One model input: a float column of the feature table and the values scoring accepts."""

    name: str
    kind: str = "continuous"  # "continuous" (scaled or binned) or "binary" (passed through)
    min: float | None = None
    max: float | None = None
    values: tuple[float, ...] | None = None

    def card_entry(self) -> dict:
        """The feature as written in a model card (scoring rejects rows outside it)."""
        return {
            "name": self.name,
            "type": "float32",
            "min": self.min,
            "max": self.max,
            "values": list(self.values) if self.values is not None else None,
        }


AGE = Feature("age", min=12.0, max=120.0)
ANNUAL_INCOME = Feature("annual_income", min=0.0)
GENDER_FEMALE = Feature("gender_female", kind="binary", values=(0.0, 1.0))
SPENDING_SCORE = Feature("spending_score", min=1.0, max=100.0)


@dataclass(frozen=True)
class ModelSpec:
    """A trainable model: features, label, where the data comes from, and the search space."""

    name: str
    description: str
    features: tuple[Feature, ...]
    family: str = "logistic"
    # Preprocessing choices the grid searches over; every one converts to ONNX and to SQL.
    #   "scale": StandardScaler on every feature
    #   "bins":  quantile bins (one-hot) on continuous features, binary features passed through
    preprocessing: tuple[str, ...] = ("scale",)
    # Solver / l1_ratio pairs of the logistic regression grid (l1_ratio 0 = ridge, 1 = lasso).
    # newton-cholesky stands in for lbfgs: same optimum, several times faster on a few columns.
    penalties: tuple[tuple[str, float], ...] = (
        ("newton-cholesky", 0.0),
        ("liblinear", 0.0),
        ("liblinear", 1.0),
        ("saga", 0.0),
        ("saga", 0.25),
        ("saga", 0.5),
        ("saga", 0.75),
        ("saga", 1.0),
    )
    bins: tuple[int, ...] = (5,)
    label: str = LABEL
    training_table: str = "training_set"
    feature_table: str = "features_customer"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def feature_names(self) -> list[str]:
        """Feature column names, in model input order."""
        return [f.name for f in self.features]


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="default",
            description="What a new customer can be scored with: age, annual income and gender.",
            features=(AGE, ANNUAL_INCOME, GENDER_FEMALE),
            preprocessing=("scale", "bins"),
            # Solvers reach the same optimum for a given C and l1_ratio: search the
            # penalty mix (ridge, two elastic nets, lasso), not solvers. 2 x 4 x 13 x 2 = 208.
            penalties=(("newton-cholesky", 0.0), ("saga", 1 / 3), ("saga", 2 / 3), ("liblinear", 1.0)),
        ),
        ModelSpec(
            name="seed",
            description=(
                "The original notebook's setup, kept for reproduction: age, annual income and "
                "spending score. The score defines the label, so this spec leaks by design."
            ),
            features=(AGE, ANNUAL_INCOME, SPENDING_SCORE),
            preprocessing=("scale",),
            notes=("Reproduces the notebook's 208-configuration grid (C x class_weight x 8 solver/penalty pairs).",),
        ),
    )
}


@dataclass(frozen=True)
class GroupSpec:
    """A clustering model: behaviour groups (k-means) on features of a SQL view, registered as its own spec."""

    name: str
    description: str
    features: tuple[Feature, ...]
    feature_table: str  # the SQL view defining the features (customers with a known score only)
    score_table: str = "features_customer"  # what the nightly job reads: the same columns, every customer
    k_range: tuple[int, int] = (2, 10)

    @property
    def feature_names(self) -> list[str]:
        """Feature column names, in model input order."""
        return [f.name for f in self.features]


GROUPS = GroupSpec(
    name="groups",
    description="Behaviour groups: k-means on annual income x spending score of customers with a known score.",
    features=(ANNUAL_INCOME, SPENDING_SCORE),
    feature_table="features_behaviour",
)


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name``, or a UsageError listing the known ones."""
    try:
        return SPECS[name]
    except KeyError:
        raise UsageError(f"unknown model spec {name!r}; known specs: {', '.join(sorted(SPECS))}") from None


def card_header(spec: ModelSpec | GroupSpec, version: str) -> dict:
    """The fields every model card begins with, from its spec (the classifier's card and the groups card)."""
    from datetime import UTC, datetime

    from mallscore.cards import CARD_FORMAT

    return {
        "card_format": CARD_FORMAT,
        "spec": spec.name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "description": spec.description,
        "features": [f.card_entry() for f in spec.features],
        "feature_table": spec.feature_table,
    }
