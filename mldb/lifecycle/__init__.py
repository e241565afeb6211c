"""Lifecycle: prediction log, feature statistics, drift, lineage, snapshots."""
