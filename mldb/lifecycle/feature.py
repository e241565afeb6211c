"""The lifecycle feature: the prediction log, DRIFT, LINEAGE, training statistics and snapshots."""

from __future__ import annotations

from mldb.features import Feature
from mldb.lifecycle import rules, tracking

FEATURE = Feature(
    name="lifecycle",
    rules=(rules.rewrite_lifecycle,),
    make_state=tracking.LifecycleState,
    on_commit=lambda session: tracking.lifecycle_state(session.database).forget(),
    on_rollback=lambda session: tracking.lifecycle_state(session.database).forget(),
    on_trained=tracking.after_train,
    on_model_dropped=tracking.forget_model,
    on_prediction=tracking.record_prediction,
    facts={
        "snapshot_query": tracking.snapshot_query,
        "sources": tracking.sources,
        "source_changed": tracking.source_changed,
    },
)
