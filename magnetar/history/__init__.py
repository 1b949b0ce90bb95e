"""Importing a tenant's history from files (`magnetar import`), through `ImportEvents`."""
