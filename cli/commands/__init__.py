"""Command groups of the `magnetar` CLI."""
