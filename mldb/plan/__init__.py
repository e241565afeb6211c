"""Planning: pure rewrite rules turn mldb's functions into DuckDB SQL plus the ML operators
that run when the statement executes (see ``mldb.plan.rules``)."""
