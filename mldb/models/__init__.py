"""Models: training, the registry, PREDICT / PREDICT_PROBA / EVALUATE."""
