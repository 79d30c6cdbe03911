"""Pure helpers of mallscore.database: masking, table names, URL choice, error classes."""

from __future__ import annotations

import pytest

from mallscore.database import mask_url, parse_url, resolve_url, scrub, split_table_name
from mallscore.errors import UsageError


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://app:p%40ss%3Aw0rd@db.mall:5432/crm", "postgresql://app:***@db.mall:5432/crm"),
        (
            "postgresql+psycopg://app:hunter22@db/crm?sslmode=require",
            "postgresql+psycopg://app:***@db/crm?sslmode=require",
        ),
        ("postgresql://app@db/crm?password=hunter22", "postgresql://app@db/crm?password=***"),
        ("postgresql://app@db/crm", "postgresql://app@db/crm"),
        ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
    ],
)
def test_mask_url_hides_passwords_wherever_they_are(url, shown):
    assert mask_url(url) == shown


def test_scrub_removes_passwords_from_driver_messages():
    message = (
        'connection to "postgresql://app:p@ss:w0rd!@db/crm" failed; dsn: host=db password=p@ss:w0rd! '
        "user=app; quoted p%40ss%3Aw0rd%21 raw p@ss:w0rd!"
    )
    cleaned = scrub(message, "postgresql://app:p%40ss%3Aw0rd%21@db/crm")
    assert "w0rd" not in cleaned and "password=***" in cleaned
    assert "p@ss" not in scrub("password='p@ss w0rd' host=db")


@pytest.mark.parametrize("name", ["segments", "mall.segments_2026", "_x", "S1"])
def test_good_table_names(name):
    assert ".".join(p for p in split_table_name(name) if p) == name


@pytest.mark.parametrize("name", ["", "a.b.c", "1abc", "seg; drop table x", 'a"b', "a b", "x" * 49, "a.", "ä"])
def test_bad_table_names_are_usage_errors(name):
    with pytest.raises(UsageError, match="not allowed"):
        split_table_name(name)


def test_postgres_urls_use_psycopg3_and_env_is_the_fallback():
    assert parse_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("sqlite:///x.db").drivername == "sqlite"
    assert resolve_url(None, "sqlite:///a", "MALLSCORE_PUBLISH_URL", "target") == "sqlite:///a"
    assert resolve_url("sqlite:///b", "sqlite:///a", "MALLSCORE_PUBLISH_URL", "target") == "sqlite:///b"
    with pytest.raises(UsageError, match="MALLSCORE_SOURCE_URL"):
        resolve_url(None, None, "MALLSCORE_SOURCE_URL", "source")
    with pytest.raises(UsageError, match="not a database URL"):
        parse_url("not a url")
