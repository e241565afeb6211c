"""The models feature: CREATE MODEL / TRAIN / PREDICT / EVALUATE and the model catalog."""

from __future__ import annotations

from mldb.features import Feature
from mldb.frontend.models import (CreateModel, DeployModel, DescribeModel, DropModel, ShowModels, ShowVersions,
                                  TrainModel)
from mldb.models import explain, functions, registry, rules, statements

FEATURE = Feature(
    name="models",
    rules=(rules.rewrite_table_predict, rules.rewrite_explanations, rules.rewrite_model_functions),
    statements={
        CreateModel: statements.create_model,
        TrainModel: statements.train_model,
        ShowModels: statements.show_models,
        DescribeModel: statements.describe_model,
        ShowVersions: statements.show_versions,
        DeployModel: statements.deploy_model,
        DropModel: statements.drop_model,
    },
    register_functions=functions.register,
    make_state=registry.ModelCache,
    on_commit=registry.forget_committed,
    on_rollback=registry.forget_all,
    on_trained=explain.record,
)
