"""PostgreSQL-shaped ``pg_catalog`` tables that DuckDB's own views leave out or shape differently.

SQLAlchemy's PostgreSQL reflection and psql's ``\\d`` read constraints from ``pg_constraint``
(1-based ``conkey``, ``pg_get_constraintdef``), index keys from ``pg_index.indkey``, column
types from ``format_type`` (``integer``, not DuckDB's ``int4``) and defaults from
``pg_attrdef``. DuckDB's ``pg_catalog`` has these names but not these contents, so each
connection of ``mldb serve`` gets temporary views with the same names built from
``duckdb_constraints()``, ``duckdb_indexes()`` and ``duckdb_columns()``, plus ``mldb_*`` macros
that the client's function calls are renamed to (``pg_catalog.translate_introspection``).
Everything else (``pg_class``, ``pg_namespace``, ``pg_type``, ...) is DuckDB's.
"""

from __future__ import annotations

_BASE_TYPE = r"""CASE regexp_replace(t, '\(.*\)$', '')
    WHEN 'INTEGER' THEN 'integer' WHEN 'BIGINT' THEN 'bigint' WHEN 'SMALLINT' THEN 'smallint'
    WHEN 'TINYINT' THEN 'smallint' WHEN 'UTINYINT' THEN 'smallint' WHEN 'USMALLINT' THEN 'integer'
    WHEN 'UINTEGER' THEN 'bigint' WHEN 'UBIGINT' THEN 'numeric(20,0)' WHEN 'HUGEINT' THEN 'numeric(38,0)'
    WHEN 'DOUBLE' THEN 'double precision' WHEN 'FLOAT' THEN 'real' WHEN 'VARCHAR' THEN 'character varying'
    WHEN 'BOOLEAN' THEN 'boolean' WHEN 'DATE' THEN 'date' WHEN 'TIME' THEN 'time without time zone'
    WHEN 'TIMESTAMP' THEN 'timestamp without time zone' WHEN 'TIMESTAMP_NS' THEN 'timestamp without time zone'
    WHEN 'TIMESTAMP_MS' THEN 'timestamp without time zone' WHEN 'TIMESTAMP_S' THEN 'timestamp without time zone'
    WHEN 'TIMESTAMP WITH TIME ZONE' THEN 'timestamp with time zone' WHEN 'TIME WITH TIME ZONE' THEN 'time with time zone'
    WHEN 'BLOB' THEN 'bytea' WHEN 'UUID' THEN 'uuid' WHEN 'INTERVAL' THEN 'interval' WHEN 'JSON' THEN 'json'
    WHEN 'DECIMAL' THEN 'numeric' || regexp_extract(t, '\(.*\)$') WHEN 'BIT' THEN 'bit varying'
    ELSE lower(t) END"""

_TYPNAMES = ("('int4', 'integer'), ('int8', 'bigint'), ('int2', 'smallint'), ('float8', 'double precision'), "
             "('float4', 'real'), ('varchar', 'character varying'), ('bool', 'boolean'), "
             "('timestamp', 'timestamp without time zone'), ('timestamptz', 'timestamp with time zone'), "
             "('time', 'time without time zone'), ('timetz', 'time with time zone')")

_CATALOG_OID = {"pg_class": 1259, "pg_type": 1247, "pg_constraint": 2606, "pg_namespace": 2615, "pg_proc": 1255,
                "pg_attribute": 1249, "pg_index": 2610}
_CATALOG_OIDS = " ".join(f"WHEN '{name}' THEN {oid}" for name, oid in _CATALOG_OID.items())

# name -> body; created in this order (later ones read earlier ones)
MACROS = {
    "mldb_pg_base_type": f"(t) AS {_BASE_TYPE}",
    "mldb_pg_type": "(t) AS CASE WHEN t LIKE '%[]' THEN mldb_pg_base_type(t[:-3]) || '[]' ELSE mldb_pg_base_type(t) END",
    "mldb_format_type": f"(p_type, p_typemod := NULL) AS (SELECT coalesce(any_value(mldb_n.pg), any_value(mldb_t.typname)) "
                        f"FROM pg_catalog.pg_type mldb_t LEFT JOIN (VALUES {_TYPNAMES}) mldb_n(duck, pg) ON mldb_n.duck = mldb_t.typname "
                        f"WHERE mldb_t.oid = p_type)",
    # visible: in the current schema or the connection's temporary one (as PostgreSQL's pg_temp)
    "mldb_table_is_visible": "(p_relation) AS p_relation IN (SELECT oid FROM pg_catalog.pg_class WHERE relnamespace IN "
                             "(SELECT oid FROM duckdb_schemas() WHERE database_name = current_database() AND "
                             "schema_name = current_schema() OR database_name = 'temp'))",
    "mldb_get_expr": "(p_expression, p_relation, p_pretty := false) AS p_expression",
    "mldb_name_parts": "(p_name) AS string_split(replace(p_name::VARCHAR, '\"', ''), '.')",
    # the system catalogs by PostgreSQL's own oids (pg_description.classoid names one of these)
    "mldb_regclass_oid": "(p_name) AS coalesce(TRY_CAST(p_name AS BIGINT), CASE replace(p_name::VARCHAR, 'pg_catalog.', '') "
                         f"{_CATALOG_OIDS} END, (SELECT any_value(mldb_c.oid) "
                         "FROM pg_catalog.pg_class mldb_c JOIN pg_catalog.pg_namespace mldb_n ON mldb_n.oid = mldb_c.relnamespace "
                         "WHERE mldb_c.relname = mldb_name_parts(p_name)[-1] AND (len(mldb_name_parts(p_name)) = 1 "
                         "AND mldb_table_is_visible(mldb_c.oid) OR mldb_n.nspname = mldb_name_parts(p_name)[-2])))",
    "mldb_regclass_name": "(p_relation) AS coalesce((SELECT any_value(CASE WHEN mldb_table_is_visible(mldb_c.oid) "
                          "THEN mldb_c.relname ELSE mldb_n.nspname || '.' || mldb_c.relname END) FROM pg_catalog.pg_class mldb_c "
                          "JOIN pg_catalog.pg_namespace mldb_n ON mldb_n.oid = mldb_c.relnamespace "
                          "WHERE mldb_c.oid = TRY_CAST(p_relation AS BIGINT)), p_relation::VARCHAR)",
    "mldb_serial_sequence": "(p_relation, p_column) AS (SELECT any_value(CASE WHEN s LIKE '%.%' THEN s "
                            "ELSE schema_name || '.' || s END) FROM (SELECT schema_name, regexp_extract(column_default, "
                            "'nextval\\(''([^'']+)''', 1) AS s FROM duckdb_columns() "
                            "WHERE column_name = p_column AND table_oid = mldb_regclass_oid(p_relation)) WHERE s <> '')",
}

# a foreign key's referenced columns as attnums of the referenced table (confkey)
_REFERENCED_KEYS = """
SELECT f.table_oid, f.constraint_index, list(rc.column_index::SMALLINT ORDER BY f.ord) AS confkey
FROM (SELECT table_oid, constraint_index, schema_name, database_name, referenced_table,
        unnest(referenced_column_names) AS name, generate_subscripts(referenced_column_names, 1) AS ord
      FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY') f
JOIN duckdb_columns() rc ON rc.table_name = f.referenced_table AND rc.schema_name = f.schema_name
    AND rc.database_name = f.database_name AND rc.column_name = f.name
GROUP BY f.table_oid, f.constraint_index"""

_CONSTRAINTS = f"""
SELECT c.table_oid * 1000000 + c.constraint_index AS oid, c.constraint_name AS conname, c.schema_oid AS connamespace,
    CASE c.constraint_type WHEN 'PRIMARY KEY' THEN 'p' WHEN 'UNIQUE' THEN 'u' WHEN 'FOREIGN KEY' THEN 'f' ELSE 'c' END
        AS contype,
    false AS condeferrable, false AS condeferred, true AS convalidated, c.table_oid AS conrelid, 0 AS contypid,
    CASE WHEN c.constraint_type IN ('PRIMARY KEY', 'UNIQUE') THEN c.table_oid * 1000000 + c.constraint_index
        ELSE 0 END AS conindid,
    0 AS conparentid, coalesce(r.table_oid, 0) AS confrelid, 'a' AS confupdtype, 'a' AS confdeltype,
    's' AS confmatchtype, true AS conislocal, 0 AS coninhcount, false AS connoinherit,
    list_transform(c.constraint_column_indexes, lambda i: (i + 1)::SMALLINT) AS conkey, fk.confkey,
    c.expression AS conbin,
    CASE WHEN c.constraint_type = 'CHECK' THEN 'CHECK (' || c.expression || ')'
        WHEN c.constraint_type = 'PRIMARY KEY' THEN 'PRIMARY KEY (' || array_to_string(c.constraint_column_names, ', ') || ')'
        WHEN c.constraint_type = 'UNIQUE' THEN 'UNIQUE (' || array_to_string(c.constraint_column_names, ', ') || ')'
        ELSE c.constraint_text END AS mldb_condef
FROM duckdb_constraints() c
LEFT JOIN duckdb_tables() r ON r.table_name = c.referenced_table AND r.schema_name = c.schema_name
    AND r.database_name = c.database_name
LEFT JOIN ({_REFERENCED_KEYS}) fk ON fk.table_oid = c.table_oid AND fk.constraint_index = c.constraint_index
WHERE c.constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY', 'CHECK')"""

_INDEX_KEYS = """
SELECT x.index_oid, list(coalesce(col.column_index, 0)::SMALLINT ORDER BY x.ord) AS indkey
FROM (SELECT index_oid, table_oid, unnest(expressions::VARCHAR[]) AS e, generate_subscripts(expressions::VARCHAR[], 1) AS ord
      FROM duckdb_indexes()) x
LEFT JOIN duckdb_columns() col ON col.table_oid = x.table_oid AND col.column_name = trim(x.e, '"')
GROUP BY x.index_oid"""

_INDEXES = f"""
SELECT c.oid AS indexrelid, c.conrelid AS indrelid, c.conkey AS indkey, c.contype = 'p' AS indisprimary,
    true AS indisunique
FROM pg_constraint c WHERE c.contype IN ('p', 'u')
UNION ALL
SELECT i.index_oid, i.table_oid, k.indkey, false, i.is_unique
FROM duckdb_indexes() i JOIN ({_INDEX_KEYS}) k ON k.index_oid = i.index_oid"""

VIEWS = {
    # with a row for the index behind each primary key and unique constraint, as PostgreSQL has
    # (relam: heap for tables, btree for indexes; relchecks and relhastriggers: psql's \d reads
    # check and foreign-key constraints only where these say there are some)
    "pg_class": "SELECT c.* REPLACE (CASE c.relkind WHEN 'r' THEN 2 WHEN 'i' THEN 403 ELSE 0 END AS relam, "
                "coalesce(c.relreplident, 'd') AS relreplident, coalesce(k.checks, 0)::SMALLINT AS relchecks, "
                "coalesce(k.foreign > 0 OR r.referenced, false) AS relhastriggers), false AS relforcerowsecurity "
                "FROM pg_catalog.pg_class c "
                "ANTI JOIN (SELECT unnest($MLDB_VIEWS) AS name) mine ON c.relkind = 'v' AND c.relpersistence = 't' "
                "AND c.relname = mine.name "
                "LEFT JOIN (SELECT table_oid, count(*) FILTER (WHERE constraint_type = 'CHECK') AS checks, "
                "count(*) FILTER (WHERE constraint_type = 'FOREIGN KEY') AS foreign FROM duckdb_constraints() "
                "GROUP BY table_oid) k ON k.table_oid = c.oid "
                "LEFT JOIN (SELECT DISTINCT t.table_oid, true AS referenced FROM duckdb_constraints() f "
                "JOIN duckdb_tables() t ON t.table_name = f.referenced_table AND t.schema_name = f.schema_name "
                "WHERE f.constraint_type = 'FOREIGN KEY') r ON r.table_oid = c.oid "
                "UNION ALL BY NAME "
                "SELECT c.table_oid * 1000000 + c.constraint_index AS oid, c.constraint_name AS relname, "
                "c.schema_oid AS relnamespace, 'i' AS relkind, 403 AS relam, 'p' AS relpersistence, 'd' AS relreplident, "
                "false AS relforcerowsecurity, false AS relispartition FROM duckdb_constraints() c "
                "WHERE c.constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
    # DuckDB's pg_attribute read straight from duckdb_columns() (a join with it doubled the cost)
    "pg_attribute": "SELECT table_oid AS attrelid, column_name AS attname, "
                    "COALESCE(map_type_id_to_pg_oid(data_type_id), (data_type_id + 16384)) AS atttypid, "
                    "0 AS attstattarget, NULL AS attlen, column_index AS attnum, 0 AS attndims, -1 AS attcacheoff, "
                    "CASE WHEN data_type ILIKE '%decimal%' THEN numeric_precision * 1000 + numeric_scale ELSE -1 END "
                    "AS atttypmod, false AS attbyval, NULL AS attalign, NOT is_nullable AS attnotnull, "
                    "column_default IS NOT NULL AS atthasdef, false AS atthasmissing, '' AS attidentity, "
                    "'' AS attgenerated, false AS attisdropped, true AS attislocal, 0 AS attinhcount, 0 AS attcollation, "
                    "NULL AS attacl, NULL AS attoptions, NULL AS attfdwoptions, NULL AS attmissingval, "
                    "mldb_pg_type(data_type) AS mldb_format_type, "
                    "CASE WHEN data_type IN ('VARCHAR', 'BLOB', 'JSON') OR data_type LIKE '%[]' THEN 'x' ELSE 'p' END "
                    "AS attstorage, '' AS attcompression FROM duckdb_columns() WHERE NOT internal",
    # DuckDB's pg_description without duckdb_functions() (most of its cost: thousands of built-in
    # functions, none with a comment) and with rows only for objects that have a comment
    "pg_description": "SELECT * FROM (SELECT table_oid AS objoid, 1259 AS classoid, 0 AS objsubid, comment AS description "
                      "FROM duckdb_tables() UNION ALL SELECT table_oid, 1259, column_index, comment FROM duckdb_columns() "
                      "UNION ALL SELECT view_oid, 1259, 0, comment FROM duckdb_views() WHERE NOT internal "
                      "UNION ALL SELECT index_oid, 1259, 0, comment FROM duckdb_indexes() "
                      "UNION ALL SELECT sequence_oid, 1259, 0, comment FROM duckdb_sequences() "
                      "UNION ALL SELECT type_oid, 1247, 0, comment FROM duckdb_types() WHERE NOT internal) "
                      "WHERE description IS NOT NULL",
    "pg_attrdef": "SELECT table_oid * 10000 + column_index AS oid, table_oid AS adrelid, column_index::SMALLINT AS adnum, "
                  "column_default AS adbin FROM duckdb_columns() WHERE column_default IS NOT NULL",
    "pg_constraint": _CONSTRAINTS,
    "pg_index": "SELECT indexrelid, indrelid, len(indkey)::SMALLINT AS indnatts, len(indkey)::SMALLINT AS indnkeyatts, "
                "indisunique, indisprimary, false AS indnullsnotdistinct, false AS indisexclusion, true AS indimmediate, "
                "false AS indisclustered, true AS indisvalid, false AS indcheckxmin, true AS indisready, "
                "true AS indislive, false AS indisreplident, indkey, list_transform(indkey, lambda k: 0) AS indcollation, "
                "list_transform(indkey, lambda k: 0) AS indclass, "
                "array_to_string(list_transform(indkey, lambda k: '0'), ' ') AS indoption, "  # int2vector's text form
                f"NULL::VARCHAR AS indexprs, NULL::VARCHAR AS indpred FROM ({_INDEXES})",
    # with the connection's temporary schema, as PostgreSQL's pg_temp_<n>
    "pg_namespace": "SELECT * FROM pg_catalog.pg_namespace UNION ALL SELECT oid, 'pg_temp_1', 0, NULL FROM duckdb_schemas() "
                    "WHERE database_name = 'temp' AND schema_name = 'main'",
    "pg_am": "SELECT * FROM (VALUES (2, 'heap', 0, 't'), (403, 'btree', 0, 'i')) am(oid, amname, amhandler, amtype)",
    "pg_opclass": "SELECT 0 AS oid, 'default' AS opcname, 0 AS opcmethod, true AS opcdefault",
    "pg_collation": "SELECT 0 AS oid, 'default' AS collname, 0 AS collnamespace WHERE false",
    "pg_database": "SELECT *, 10 AS datdba, 6 AS encoding, 'C' AS datcollate, 'C' AS datctype, "
                   "NULL::VARCHAR AS daticulocale, 'c' AS datlocprovider FROM pg_catalog.pg_database",
    "pg_range": "SELECT 0::UINTEGER AS rngtypid, 0::UINTEGER AS rngsubtype, 0::UINTEGER AS rngmultitypid WHERE false",
}

# More macros reading the views above.
LATE_MACROS = {
    "mldb_constraintdef": "(p_constraint, p_pretty := false) AS "
                          "(SELECT any_value(mldb_c.mldb_condef) FROM (SELECT oid AS mldb_oid, mldb_condef FROM pg_constraint) mldb_c "
                          "WHERE mldb_c.mldb_oid = p_constraint)",
    "mldb_indexdef": "(p_index, p_column := 0, p_pretty := false) AS coalesce((SELECT any_value(CASE WHEN p_column > 0 "
                     "THEN trim((mldb_i.expressions::VARCHAR[])[p_column], '\"') ELSE 'CREATE ' || CASE WHEN mldb_i.is_unique "
                     "THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || mldb_i.index_name || ' ON ' || mldb_i.schema_name || '.' "
                     "|| mldb_i.table_name || ' USING btree (' || array_to_string(mldb_i.expressions::VARCHAR[], ', ') "
                     "|| ')' END) "
                     "FROM duckdb_indexes() mldb_i WHERE mldb_i.index_oid = p_index), "
                     "(SELECT any_value(CASE WHEN p_column > 0 THEN mldb_k.constraint_column_names[p_column] "
                     "ELSE 'CREATE UNIQUE INDEX ' || mldb_k.constraint_name || ' ON ' || mldb_k.schema_name || '.' || "
                     "mldb_k.table_name || ' USING btree (' || array_to_string(mldb_k.constraint_column_names, ', ') || ')' "
                     "END) FROM duckdb_constraints() mldb_k WHERE mldb_k.table_oid * 1000000 + mldb_k.constraint_index = p_index))",
}

# A client's pg_catalog function -> the macro it is renamed to.
RENAMED = {
    "pg_table_is_visible": "mldb_table_is_visible",
    "pg_get_expr": "mldb_get_expr",
    "pg_get_serial_sequence": "mldb_serial_sequence",
    "pg_get_constraintdef": "mldb_constraintdef",
    "pg_get_indexdef": "mldb_indexdef",
    "format_type": "mldb_format_type",
    "json_build_object": "json_object",
}


VIEWS["pg_class"] = VIEWS["pg_class"].replace("$MLDB_VIEWS", str(list(VIEWS)))  # ours: not the client's


def statements() -> list[str]:
    """The ``CREATE OR REPLACE TEMP ...`` statements, in dependency order."""
    return ([f"CREATE OR REPLACE TEMP MACRO {name}{body}" for name, body in MACROS.items()]
            + [f"CREATE OR REPLACE TEMP VIEW {name} AS {body}" for name, body in VIEWS.items()]
            + [f"CREATE OR REPLACE TEMP MACRO {name}{body}" for name, body in LATE_MACROS.items()])
