"""Glue between DuckDB and Python: Arrow UDF registration and batch helpers."""
