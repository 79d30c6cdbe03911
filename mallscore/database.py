"""Connections to the mall's own databases (any SQLAlchemy URL), with passwords kept out of sight.

The warehouse is DuckDB and lives in :mod:`mallscore.warehouse`; this module is
for the *other* side: a PostgreSQL (or any SQLAlchemy) database customers are
read from and segments are published to. It owns three things every such
command needs:

* turning a URL (from an option or ``MALLSCORE_SOURCE_URL`` /
  ``MALLSCORE_PUBLISH_URL``) into an engine; ``postgresql://`` means psycopg 3,
  so libpq's own ``PGPASSWORD`` and ``~/.pgpass`` work when the URL has no
  password;
* masking: :func:`mask_url` for any URL that is shown, :func:`scrub` for any
  driver message that might echo a connection string;
* one classification of driver errors into :class:`TemporaryError` (exit 75,
  retry later: refused, timed out, busy) or :class:`ConfigError` (exit 78: bad
  credentials, missing database/table, no permission).

SQLAlchemy and psycopg are imported inside the functions: the scoring path
never pays for them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from mallscore.errors import BadInputError, ConfigError, MallscoreError, TemporaryError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import URL, Engine

MASK = "***"
CONNECT_TIMEOUT_S = 10
_SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "secret", "token")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KEYVALUE = re.compile(
    r"(?i)\b(?P<key>" + "|".join(_SECRET_KEYS) + r")(?P<sep>\s*=\s*|%3D)(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,]+)"
)

# A table name from the command line: [schema.]name, plain identifiers only, short
# enough that "<name>__stage_xxxxxxxx" and "<name>_runs" still fit PostgreSQL's 63 bytes.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")

# SQLSTATE classes/codes that mean "try again later" (PostgreSQL, also used by other servers).
_RETRY_SQLSTATES = ("08", "53", "57P", "40001", "40P01", "55P03", "57014", "58")
_CONFIG_SQLSTATES = {
    "28": "authentication failed: check the user and password (URL, PGPASSWORD or ~/.pgpass)",
    "3D000": "the database does not exist",
    "3F000": "the schema does not exist",
    "42P01": "the table does not exist",
    "42501": "permission denied",
    "2BP01": "other objects (views?) depend on the target table; drop them or publish to another table",
}
_RETRY_TEXT = (
    "connection refused",
    "timeout expired",
    "timed out",
    "could not connect",
    "server closed the connection",
    "network is unreachable",
    "no route to host",
    "connection reset",
    "the database system is starting up",
    "the database system is shutting down",
    "too many clients",
    "database is locked",
    "lock timeout",
    "canceling statement due to lock timeout",
)
_CONFIG_TEXT = (
    ("password authentication failed", _CONFIG_SQLSTATES["28"]),
    ("no password supplied", "no password supplied: put it in the URL's environment variable, PGPASSWORD or ~/.pgpass"),
    ("authentication failed", _CONFIG_SQLSTATES["28"]),
    ("could not translate host name", "unknown host name"),
    ("does not exist", "does not exist"),
    ("no such table", "the table does not exist"),
    ("permission denied", "permission denied"),
    ("unable to open database file", "the database file cannot be opened"),
    ("readonly database", "the database is read-only"),
)


def mask_url(url: str | URL | None) -> str:
    """The URL with its password (and any password-like query value) replaced by ``***``."""
    if url is None:
        return ""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(text)
        shown = parsed.render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: mask by pattern
        shown = text
    return scrub(shown)


def _password_forms(password: str) -> set[str]:
    forms = {password, quote(password, safe=""), quote_plus(password), quote(password)}
    return {f for f in forms if len(f) >= 3}


def scrub(text: str, *urls: str | URL | None) -> str:
    """``text`` with passwords removed: those of ``urls`` (raw and URL-quoted), user:pw@ and password=..."""
    for url in urls:  # known passwords first: a raw '@' in one would confuse the patterns below
        password = _password_of(url)
        if password:
            for form in sorted(_password_forms(password), key=len, reverse=True):
                text = text.replace(form, MASK)
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    return _KEYVALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{MASK}", text)


def _password_of(url: str | URL | None) -> str | None:
    if url is None:
        return None
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:
        match = _USERINFO.search(str(url))
        return match.group("pw") if match else None
    password = parsed.password
    if password is None:
        for key in _SECRET_KEYS:
            value = parsed.query.get(key)
            if value:
                return value if isinstance(value, str) else value[0]
    return str(password) if password is not None else None


def resolve_url(url: str | None, configured: str | None, env_var: str, what: str) -> str:
    """The URL given on the command line, else the configured one (``env_var``); UsageError when neither is set."""
    chosen = (url or configured or "").strip()
    if not chosen:
        raise UsageError(
            f"no {what} database: pass a URL or set {env_var} (keep the password out of the URL: "
            "use PGPASSWORD or ~/.pgpass)"
        )
    return chosen


def parse_url(url: str) -> URL:
    """Parse a SQLAlchemy URL; ``postgresql://`` / ``postgres://`` select psycopg 3."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = url.strip()
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError):
        raise UsageError(f"not a database URL: {mask_url(text)!r} (expected e.g. postgresql://user@host/db)") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine(url: str) -> Engine:
    """An engine for ``url`` that pools nothing (no file or server session stays open) and hides bound values."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    parsed = parse_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        engine = sqlalchemy.create_engine(parsed, poolclass=NullPool, hide_parameters=True, connect_args=connect_args)
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError(f"no SQLAlchemy dialect/driver installed for {mask_url(parsed)}") from None
    except (ImportError, ModuleNotFoundError) as exc:
        raise ConfigError(f"the driver for {mask_url(parsed)} is not installed ({exc.name})") from None
    if engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":
        _transactional_sqlite(engine)
    return engine


def _transactional_sqlite(engine: Engine) -> None:
    """Make SQLite's DDL part of the transaction (the stdlib driver otherwise commits before DDL)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _explicit_begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("begin")


def is_postgres(engine: Engine) -> bool:
    """True when the engine talks to PostgreSQL through psycopg 3 (the COPY fast path)."""
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


def split_table_name(name: str) -> tuple[str | None, str]:
    """``[schema.]table`` checked against a strict identifier pattern; UsageError otherwise."""
    parts = name.split(".") if name else [""]
    if len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise UsageError(
            f"table name {name[:80]!r} is not allowed: use [schema.]name with letters, digits and "
            "underscores (not starting with a digit, at most 48 characters each)"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def driver_errors() -> tuple[type[BaseException], ...]:
    """Exception classes that mean "the database said no" (as opposed to a bug): SQLAlchemy's and the drivers'."""
    import sqlite3

    import sqlalchemy.exc

    errors: list[type[BaseException]] = [sqlalchemy.exc.SQLAlchemyError, sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    return tuple(errors)


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(state) if state else None


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def classify_error(exc: BaseException, url: str | URL, doing: str) -> MallscoreError:
    """A driver/SQLAlchemy failure as one masked line: TemporaryError (75) or ConfigError (78).

    ``doing`` says what was attempted, e.g. ``"publishing to"``. Integrity
    violations (duplicate keys...) become BadInputError (65): the data is wrong.
    """
    if isinstance(exc, MallscoreError):
        return exc
    where = mask_url(url)
    detail = scrub(_first_line(exc), url)
    lowered = detail.lower()
    state = _sqlstate(exc)
    hint: str | None = None
    if state:
        if state.startswith("23"):
            return BadInputError(f"{doing} {where}: the data violates a constraint ({detail}); nothing was changed")
        if state.startswith(_RETRY_SQLSTATES):
            return TemporaryError(f"{doing} {where} failed, retry later: {detail}")
        for prefix, text in _CONFIG_SQLSTATES.items():
            if state.startswith(prefix):
                hint = text
                break
        if hint is None and state.startswith("42"):
            hint = "the SQL was rejected"
    if hint is None:
        if any(t in lowered for t in _RETRY_TEXT):
            return TemporaryError(f"{doing} {where} failed, retry later: {detail}")
        for needle, text in _CONFIG_TEXT:
            if needle in lowered:
                hint = text
                break
    if hint is None:
        import sqlalchemy.exc as sa_exc

        if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) and not state:
            # no SQLSTATE and no known text: the connection itself failed; worth a retry
            return TemporaryError(f"{doing} {where} failed, retry later: {detail}")
        hint = "database error"
    return ConfigError(f"{doing} {where}: {hint} ({detail})")
