"""Lifecycle grammar: the DRIFT and LINEAGE table functions.

    SELECT * FROM DRIFT(churn, (SELECT * FROM new_customers));
    SELECT * FROM DRIFT('churn@2', new_customers, psi_threshold => 0.1, ks_threshold => 0.05);
    SELECT * FROM LINEAGE(customers);      -- every edge upstream and downstream of a table or model

Both are replaced by the rule ``mldb.lifecycle.rules:rewrite_lifecycle``.
"""

from __future__ import annotations

from mldb.frontend.expressions import MldbFunction


class Drift(MldbFunction):
    arg_types = {"expressions": True}
    is_var_len_args = True
    usage = "DRIFT(model, (query) [, psi_threshold => x, ks_threshold => x, ks_alpha => x]), in FROM"


class Lineage(MldbFunction):
    arg_types = {"expressions": True}
    is_var_len_args = True
    usage = "LINEAGE(table or model), in FROM"


FUNCTIONS = {
    "DRIFT": lambda args: Drift(expressions=args),
    "LINEAGE": lambda args: Lineage(expressions=args),
}

TRIGGERS = {"DRIFT", "LINEAGE"}
