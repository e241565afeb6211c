"""What mldb (DuckDB underneath) supports, for SQLAlchemy's compliance suite.

SQLAlchemy's ``SuiteRequirements`` leaves closed (skipped, without a reason) much that a given
backend may have; a dialect's own requirements class opens what its database supports. Here:
what mldb has is opened (through ``mldb serve`` with stock ``postgresql+psycopg`` and in-process
with ``mldb://`` alike, unless said), and every feature the suite would test and mldb lacks is
closed with the reason pytest prints for each test it skips."""

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements


def _lacks(reason: str):
    """A closed requirement; ``reason`` is what pytest prints for each test it skips."""
    return exclusions.skip_if(lambda config: True, reason)


def _has():
    return exclusions.open()


class Requirements(SuiteRequirements):
    # -- what DuckDB and mldb lack ---------------------------------------------------------------
    @property
    def indexes_with_ascdesc(self):
        return _lacks("mldb's SQL frontend does not read ASC/DESC in CREATE INDEX (DuckDB ignores it)")

    @property
    def reflect_indexes_with_ascdesc(self):
        return _lacks("DuckDB indexes keep no ASC/DESC order")

    @property
    def reflect_indexes_with_ascdesc_as_expression(self):
        return _lacks("DuckDB indexes keep no ASC/DESC order")

    @property
    def identity_columns(self):
        return _lacks("DuckDB has no GENERATED ... AS IDENTITY columns (SERIAL and sequences work)")

    @property
    def identity_columns_standard(self):
        return _lacks("DuckDB has no GENERATED ... AS IDENTITY columns (SERIAL and sequences work)")

    @property
    def server_side_cursors(self):
        return _lacks("mldb serve has no DECLARE CURSOR (psycopg's named cursors); results stream anyway")

    @property
    def named_constraints(self):
        return _lacks("DuckDB does not keep a constraint's given name: it names each one itself (t_a_pkey, t_b_fkey)")

    @property
    def reflects_pk_names(self):
        return _lacks("DuckDB does not keep a primary key's given name: it names it <table>_<columns>_pkey")

    @property
    def foreign_key_constraint_name_reflection(self):
        return _lacks("DuckDB does not keep a foreign key's given name: it names it <table>_<columns>_fkey")

    @property
    def check_constraint_reflection(self):
        return _lacks("DuckDB keeps CHECK constraints but not their given names, which these tests compare")

    @property
    def inline_check_constraint_reflection(self):
        return _lacks("DuckDB keeps CHECK constraints but not their given names, which these tests compare")

    @property
    def ctes(self):
        return _lacks("DuckDB runs CTEs, but the suite's CTE tests reset a table whose rows reference each other "
                      "(a self-referencing foreign key), and DuckDB cannot delete such rows (its foreign-key limits)")

    @property
    def ctes_with_update_delete(self):
        return self.ctes

    @property
    def ctes_on_dml(self):
        return self.ctes

    @property
    def cross_schema_fk_reflection(self):
        return _lacks("DuckDB refuses foreign keys across schemas")

    @property
    def foreign_key_constraint_option_reflection_ondelete(self):
        return _lacks("DuckDB foreign keys have no ON DELETE actions (CASCADE, SET NULL, ... are refused)")

    @property
    def foreign_key_constraint_option_reflection_onupdate(self):
        return _lacks("DuckDB foreign keys have no ON UPDATE actions (CASCADE, SET NULL, ... are refused)")

    @property
    def fk_constraint_option_reflection_ondelete_restrict(self):
        return _lacks("DuckDB foreign keys have no ON DELETE actions")

    @property
    def fk_constraint_option_reflection_ondelete_noaction(self):
        return _lacks("DuckDB foreign keys have no ON DELETE actions")

    @property
    def fk_constraint_option_reflection_onupdate_restrict(self):
        return _lacks("DuckDB foreign keys have no ON UPDATE actions")

    @property
    def deferrable_fks(self):
        return _lacks("DuckDB constraints are checked immediately: no DEFERRABLE")

    @property
    def non_updating_cascade(self):
        return _lacks("DuckDB foreign keys have no ON UPDATE CASCADE")

    @property
    def savepoints(self):
        return _lacks("DuckDB has no savepoints (mldb refuses ROLLBACK TO rather than undo too little)")

    @property
    def two_phase_transactions(self):
        return _lacks("DuckDB has no two-phase commit (PREPARE TRANSACTION)")

    @property
    def computed_columns(self):
        return _lacks("DuckDB generated columns are VIRTUAL only; PostgreSQL's dialect writes STORED ones")

    @property
    def materialized_views(self):
        return _lacks("DuckDB has no materialized views")

    @property
    def index_reflects_included_columns(self):
        return _lacks("DuckDB indexes have no INCLUDE columns")

    @property
    def reflect_table_options(self):
        return _lacks("DuckDB tables have no storage options (WITH (...), TABLESPACE) to reflect")

    @property
    def column_collation_reflection(self):
        return _lacks("DuckDB's catalog does not report a column's collation")

    @property
    def constraint_comment_reflection(self):
        return _lacks("DuckDB keeps no comments on constraints")

    @property
    def json_deserializer_binary(self):
        return _lacks("DuckDB has no JSONB")

    @property
    def fetch_percent(self):
        return _lacks("DuckDB has no FETCH FIRST n PERCENT")

    @property
    def fetch_ties(self):
        return _lacks("DuckDB has no FETCH FIRST ... WITH TIES")

    computed_columns_stored = computed_columns_virtual = computed_columns
    computed_columns_default_persisted = computed_columns_reflect_persisted = computed_columns
    ctes_with_values = ctes
    materialized_views_reflect_pk = materialized_views

    @property
    def async_dialect(self):
        return _lacks("the runs use synchronous dialects (mldb://, postgresql+psycopg)")

    @property
    def dbapi_lastrowid(self):
        return _lacks("no cursor.lastrowid, as in PostgreSQL: SQLAlchemy reads new keys with RETURNING")

    emulated_lastrowid = emulated_lastrowid_even_with_sequences = dbapi_lastrowid

    @property
    def nvarchar_types(self):
        return _lacks("PostgreSQL's dialect has no NVARCHAR")

    @property
    def reflect_tables_no_columns(self):
        return _lacks("DuckDB refuses a table with no columns")

    @property
    def supports_bitwise_xor(self):
        return _lacks("DuckDB has no # operator (PostgreSQL's XOR); it has xor()")

    @property
    def foreign_keys_reflect_as_index(self):
        return _lacks("as in PostgreSQL, a foreign key has no index of its own")

    @property
    def unique_index_reflect_as_unique_constraints(self):
        return _lacks("as in PostgreSQL, a unique index is not reflected as a unique constraint")

    @property
    def legacy_unconditional_json_extract(self):
        return _lacks("a legacy behaviour of other backends' JSON functions, not PostgreSQL's")

    # -- what mldb has, which SuiteRequirements leaves closed --------------------------------------
    views = property(lambda self: _has())
    temporary_views = property(lambda self: _has())
    temp_table_names = property(lambda self: _has())
    has_temp_table = property(lambda self: _has())
    schema_create_delete = property(lambda self: _has())
    table_ddl_if_exists = property(lambda self: _has())
    index_ddl_if_exists = property(lambda self: _has())
    comment_reflection = property(lambda self: _has())
    unique_constraints_reflect_as_index = property(lambda self: _has())
    server_defaults = property(lambda self: _has())
    expression_server_defaults = property(lambda self: _has())
    except_ = property(lambda self: _has())
    intersect = property(lambda self: _has())
    window_functions = property(lambda self: _has())
    tuple_in = property(lambda self: _has())
    update_from = property(lambda self: _has())
    delete_from = property(lambda self: _has())
    table_value_constructor = property(lambda self: _has())
    supports_distinct_on = property(lambda self: _has())
    nullsordering = property(lambda self: _has())
    regexp_match = property(lambda self: _has())
    regexp_replace = property(lambda self: _has())
    boolean_col_expressions = property(lambda self: _has())
    fetch_first = property(lambda self: _has())
    fetch_no_order_by = property(lambda self: _has())
    fetch_expression = property(lambda self: _has())
    fetch_offset_with_options = property(lambda self: _has())
    order_by_label_with_expression = property(lambda self: _has())
    mod_operator_as_percent_sign = property(lambda self: _has())
    supports_bitwise_and = property(lambda self: _has())
    supports_bitwise_or = property(lambda self: _has())
    supports_bitwise_not = property(lambda self: _has())
    supports_bitwise_shift = property(lambda self: _has())
    datetime_interval = property(lambda self: _has())
    datetime_timezone = property(lambda self: _has())
    datetime_historic = property(lambda self: _has())
    date_historic = property(lambda self: _has())
    timestamp_microseconds = property(lambda self: _has())
    datetime_literals = property(lambda self: _has())
    uuid_data_type = property(lambda self: _has())
    json_type = property(lambda self: _has())
    array_type = property(lambda self: _has())
    infinity_floats = property(lambda self: _has())
    precision_numerics_enotation_small = property(lambda self: _has())
    precision_numerics_many_significant_digits = property(lambda self: _has())
    precision_numerics_retains_significant_digits = property(lambda self: _has())
    unicode_ddl = property(lambda self: _has())
    implicit_default_schema = property(lambda self: _has())
