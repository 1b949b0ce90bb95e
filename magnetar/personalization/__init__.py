"""The personalization core as pure logic: signals, folding events into state, serving.

Nothing in this package performs I/O. Data flows through `records`, `settings`, `decay`,
`fold` (one `StateDelta` per batch), `state` (its keys, merge rules and the `StateReader`
port), `memory_state`, `recommend` and `evaluation` (docs/architecture.md, "State and serving
model")."""
