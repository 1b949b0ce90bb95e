"""Seeing the platform: per-tenant pipeline snapshots, the live status view, metrics."""
