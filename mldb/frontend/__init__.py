"""The SQL frontend: mldb's sqlglot dialect and the statement splitter."""

from mldb.frontend.dialect import MLDB, Statement, parse, split_statements

__all__ = ["MLDB", "Statement", "parse", "split_statements"]
