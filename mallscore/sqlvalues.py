"""How a model card's values reach SQL: bound parameters, DuckDB session variables, or exact literals.

The rules in :mod:`mallscore.contract` are written once against a renderer:
:class:`Params` (``$t0_p``, bound by the statement that runs them),
:class:`Variables` (``getvariable('mallscore_t0_p')``, for the job's views and
macros, which cannot bind parameters; :func:`set_variables` binds them) and
:class:`Literals` (exact constants, for SQL that leaves mallscore:
``export-sql`` for DuckDB, PostgreSQL and Spark).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mallscore.errors import ConfigError


def quote(identifier: str) -> str:
    """Quote an identifier that was checked against the catalog."""
    return '"' + identifier.replace('"', '""') + '"'


class Params:
    """Card values as named parameters (``$t0_p``); :attr:`values` holds what to bind."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def ref(self, key: str, value: Any) -> str:
        """The SQL that stands for ``value`` (remembered under ``key``)."""
        self.values[key] = value
        return "$" + key

    def number(self, key: str, value: float) -> str:
        """A double."""
        return self.ref(key, float(value))

    def text(self, key: str, value: str) -> str:
        """A string."""
        return self.ref(key, str(value))

    def is_one_of(self, column: str, key: str, values: Sequence[float]) -> str:
        """True when ``column`` is one of ``values``."""
        return f"list_contains({self.ref(key, [float(v) for v in values])}, {column})"

    def as_text(self, expr: str) -> str:
        """An expression cast to text (for reasons)."""
        return f"cast({expr} as varchar)"

    def quote(self, identifier: str) -> str:
        """A column name quoted for the engine that runs the SQL."""
        return quote(identifier)


class Variables(Params):
    """Card values as DuckDB session variables, for views and macros (which cannot bind parameters).

    :func:`set_variables` sets them with bound parameters before the SQL runs.
    """

    PREFIX = "mallscore_"

    def ref(self, key: str, value: Any) -> str:
        """``getvariable('mallscore_<key>')``."""
        self.values[key] = value
        return f"getvariable('{self.PREFIX}{key}')"


def set_variables(con: Any, variables: Variables) -> None:
    """Set every variable the rendered SQL reads, each value bound (never pasted into the text)."""
    for key, value in variables.values.items():
        con.execute(f"set variable {Variables.PREFIX}{key} = $value", {"value": value})


class Literals(Params):
    """Card values as exact constants, for SQL run by another engine (``export-sql``).

    Doubles are written with 17 significant digits in exponent form (read back
    exactly by DuckDB, PostgreSQL and Spark); strings are quoted with ``''``.
    """

    def __init__(
        self,
        double: str = "double precision",
        text: str = "varchar",
        identifier_quote: str = '"',
        backslash_escapes: bool = False,
    ) -> None:
        super().__init__()
        self.double, self.text_type, self.identifier_quote = double, text, identifier_quote
        self.backslash_escapes = backslash_escapes  # Spark reads \ in a string literal as an escape

    def number(self, key: str, value: float) -> str:
        """``cast(<17 digits> as double)``."""
        return literal(value, self.double)

    def text(self, key: str, value: str) -> str:
        """``'value'`` with quotes doubled (Spark: quotes and backslashes escaped with a backslash)."""
        if self.backslash_escapes:
            return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + str(value).replace("'", "''") + "'"

    def is_one_of(self, column: str, key: str, values: Sequence[float]) -> str:
        """``column in (...)``."""
        return f"{column} in ({', '.join(self.number(key, v) for v in values)})"

    def as_text(self, expr: str) -> str:
        """``cast(expr as <text type>)`` (Spark has no length-free varchar: ``string``)."""
        return f"cast({expr} as {self.text_type})"

    def quote(self, identifier: str) -> str:
        """The identifier in the engine's quotes (Spark: backticks), the quote character doubled inside."""
        q = self.identifier_quote
        return q + identifier.replace(q, q + q) + q


def literal(value: float, double: str = "double precision") -> str:
    """A double constant every engine reads exactly (ConfigError for inf/NaN)."""
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"the model contains a non-finite constant ({value})")
    return f"cast({value:.16e} as {double})"
