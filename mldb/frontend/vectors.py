"""Grammar of vectors: EMBED, VECTOR_SEARCH, CREATE/DROP INDEX ... USING FAISS, LOAD UDFS.

Statements become ``MldbStatement`` nodes run by ``mldb.vectors.statements``; ``EMBED`` and
``VECTOR_SEARCH`` become ``MldbFunction`` nodes that ``mldb.vectors.rules`` replaces.

    EMBED(text [, model])
    SELECT ... FROM VECTOR_SEARCH(table, column, query_vector, k)
    CREATE INDEX [IF NOT EXISTS] name ON table USING FAISS (column)
        [WITH (metric = 'cosine', type = 'hnsw', m = 32, ef_search = 64, key = 'id')]
    DROP INDEX [IF EXISTS] name          (a FAISS index; any other goes to DuckDB)
    LOAD UDFS FROM 'file.py' | ?
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.helper import seq_get
from sqlglot.tokens import TokenType

from mldb.frontend.expressions import MldbFunction, MldbStatement



class CreateFaissIndex(MldbStatement):
    """``this``: index name; ``table``: exp.Table; ``column``: identifier; ``options``: exp.Tuple."""

    arg_types = {"this": True, "table": True, "column": True, "options": False, "exists": False}


class DropFaissIndex(MldbStatement):
    """``behavior``: CASCADE or RESTRICT (nothing depends on a FAISS index: both just drop it)."""

    arg_types = {"this": True, "exists": False, "behavior": False}


class LoadUdfs(MldbStatement):
    """``this``: a string literal or a parameter placeholder naming the Python file."""



class Embed(MldbFunction):
    """``EMBED(text [, model])``."""

    arg_types = {"this": True, "expression": False}
    _sql_names = ["EMBED"]
    usage = "EMBED(text [, 'model'])"


class VectorSearch(MldbFunction):
    """``VECTOR_SEARCH(table, column, query_vector, k)`` (a table source)."""

    arg_types = {"expressions": True}
    is_var_len_args = True
    _sql_names = ["VECTOR_SEARCH"]
    usage = "VECTOR_SEARCH(table, column, query_vector, k), in FROM"


def _at_end(parser) -> bool:
    return parser._curr is None or parser._curr.token_type in (TokenType.SENTINEL, TokenType.SEMICOLON)


def _options(parser) -> exp.Tuple | None:
    if not parser._match(TokenType.WITH):
        return None
    return exp.Tuple(expressions=parser._parse_wrapped_csv(parser._parse_assignment))


def _parse_create(parser) -> exp.Expression | None:
    if not parser._match_text_seq("CREATE", "INDEX"):
        return None
    exists = parser._match_text_seq("IF", "NOT", "EXISTS")
    name = parser._parse_id_var(any_token=False)
    if name is None or not parser._match(TokenType.ON):
        return None
    table = parser._parse_table_parts()
    if table is None or not parser._match(TokenType.USING) or not parser._match_text_seq("FAISS"):
        return None  # a DuckDB index (ART): sqlglot's own grammar and DuckDB take it
    columns = parser._parse_wrapped_csv(parser._parse_id_var)
    if len(columns) != 1:
        parser.raise_error("a FAISS index covers exactly one vector column")
    return CreateFaissIndex(this=name, table=table, column=columns[0], options=_options(parser),
                            exists=exists or None)


def _parse_drop(parser) -> exp.Expression | None:
    if not parser._match_text_seq("DROP", "INDEX"):
        return None
    exists = parser._match_text_seq("IF", "EXISTS")
    name = parser._parse_table_parts()
    behavior = next((word for word in ("CASCADE", "RESTRICT") if parser._match_text_seq(word)), None)
    if name is None or not _at_end(parser):
        return None
    return DropFaissIndex(this=name, exists=exists or None, behavior=behavior)


def _parse_load(parser) -> exp.Expression | None:
    if not parser._match_text_seq("LOAD", "UDFS"):
        return None
    if not parser._match(TokenType.FROM):
        parser.raise_error("Expecting LOAD UDFS FROM 'file.py'")
    if parser._match(TokenType.STRING):
        return LoadUdfs(this=exp.Literal.string(parser._prev.text))
    source = parser._parse_placeholder()
    if source is None:
        parser.raise_error("Expecting a file name as a string literal or a ? parameter")
    return LoadUdfs(this=source)


STATEMENTS = {
    "CREATE": (_parse_create,),
    "DROP": (_parse_drop,),
    "LOAD": (_parse_load,),
}

FUNCTIONS = {
    "EMBED": lambda args: Embed(this=seq_get(args, 0), expression=seq_get(args, 1)),
    "VECTOR_SEARCH": lambda args: VectorSearch(expressions=args),
}

TRIGGERS = {
    "EMBED", "FAISS", "VECTOR_SEARCH", "ARRAY_DISTANCE", "ARRAY_COSINE_DISTANCE",
    "ARRAY_NEGATIVE_INNER_PRODUCT", "LIST_DISTANCE", "LIST_COSINE_DISTANCE", "LIST_NEGATIVE_INNER_PRODUCT",
    "INDEX", "UDFS",
}
