"""Monitors: checks over a model, on a schedule, that retrain, roll back or alert (SPEC section 11)."""
