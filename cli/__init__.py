"""The `magnetar` command line, the top layer: commands, the demo and the local dev stack.

Nothing below imports it (docs/architecture.md, "Components and their layers"); it may import
every other package.
"""
