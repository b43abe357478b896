"""Which SQL pins a server connection to its client (sans-IO)."""

from __future__ import annotations

import pytest

from tcpworkers.pool._sql import SqlEffects, analyze, changed_parameters


@pytest.mark.parametrize(
    ("sql", "pins"),
    [
        ("SET search_path = app", ("set",)),
        ("set  TimeZone to 'UTC'", ("set",)),
        ("SET SESSION statement_timeout = 5", ("set",)),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", ("set",)),
        ("SET ROLE other", ("set",)),
        ("select set_config('app.user', '42', false)", ("set_config",)),
        ("select pg_catalog.set_config('a.b', $1, $2)", ("set_config",)),
        ("LISTEN jobs", ("listen",)),
        ("CREATE TEMP TABLE t (a int)", ("temp",)),
        ("create temporary view v as select 1", ("temp",)),
        ("CREATE GLOBAL TEMPORARY TABLE t (a int)", ("temp",)),
        ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", ("temp",)),
        ("create temp sequence s", ("temp",)),
        ("SELECT 1 AS a INTO TEMP TABLE t", ("temp",)),
        ("create function pg_temp.f() returns int language sql as $$ select 1 $$", ("temp",)),
        ("create table pg_temp.t (a int)", ("temp",)),
        ("PREPARE q (int) AS SELECT $1", ("prepare",)),
        ("SELECT pg_advisory_lock(1)", ("advisory_lock",)),
        ("select pg_try_advisory_lock_shared(1, 2)", ("advisory_lock",)),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", ("with_hold",)),
        ("declare c scroll cursor with hold for select 1", ("with_hold",)),
        ("LOAD 'auto_explain'", ("load",)),
        ("DO $$ BEGIN PERFORM 1; END $$", ("do",)),
        ("select 1; set x.y = 1; listen a", ("set", "listen")),
        ("select 'unterminated; set x = 1", ("unparsed",)),
        ("set x = 1 /* unterminated", ("unparsed",)),
    ],
)
def test_pins(sql: str, pins: tuple[str, ...]) -> None:
    assert analyze(sql).pins == pins


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "SET LOCAL search_path = app",
        "set local statement_timeout = 1",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET CONSTRAINTS ALL DEFERRED",
        "select set_config('app.user', '42', true)",
        "SELECT pg_advisory_xact_lock(1)",
        "select pg_advisory_unlock(1)",
        "DECLARE c CURSOR FOR SELECT 1",
        "DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1",
        "CREATE TABLE pool_core_x (a int)",
        "CREATE TABLE tempo (a int)",
        "CREATE TEMP TABLE staging (a int) ON COMMIT DROP",
        "create temporary table s as select 1 as a with no data on commit drop",
        "select * from settings where offset_set = 'SET x = 1'",
        "select 'LISTEN x', \"set\" from t",
        "select $$ SET x = 1 $$, $tag$ listen $tag$",
        "select E'it\\'s; SET x = 1'",
        "select 'it''s; SET x = 1'",
        "-- SET x = 1\nselect 1",
        "/* outer /* SET x */ LISTEN y */ select 1",
        "UNLISTEN *",
        "RESET ALL",
        "reset search_path",
        # asyncpg's reset query, sent by its pool on every release
        "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;",
        "PREPARE TRANSACTION 'tx1'",
        "BEGIN; SELECT 1; COMMIT",
        "select temp from readings",
        "select * from t order by x limit 1 offset 5",
        "SELECT 1 INTO t2",
    ],
)
def test_no_pins(sql: str) -> None:
    assert analyze(sql).pins == ()


def test_forgotten_prepared_statements() -> None:
    assert analyze("DISCARD ALL").forgets_prepared
    assert analyze("discard plans").forgets_prepared
    assert analyze("DEALLOCATE ALL").forgets_prepared
    assert analyze("deallocate prepare all").forgets_prepared
    assert not analyze("DEALLOCATE q").forgets_prepared
    assert not analyze("DISCARD TEMP").forgets_prepared
    assert analyze("select 1") == SqlEffects()


def test_changed_parameters() -> None:
    base = {"TimeZone": "UTC", "DateStyle": "ISO, MDY"}
    assert changed_parameters(base, dict(base)) == ()
    assert changed_parameters(base, {**base, "TimeZone": "Europe/Paris"}) == ("TimeZone",)
    assert changed_parameters(base, {**base, "search_path": "x"}) == ("search_path",)
