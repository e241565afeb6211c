"""``mldb serve``: the PostgreSQL wire protocol."""
