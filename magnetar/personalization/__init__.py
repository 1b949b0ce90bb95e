"""The personalization core as pure logic: signals, folding events into state, serving.

Nothing in this package performs I/O. The pieces, in the order data flows through them:

- `records`: `EnrichedEvent`, the input record, and the event type names.
- `settings`: per-tenant `SignalSettings` (weights, half-lives, bounds) and
  `RecommendSettings` (blend weights, candidate widths), both frozen with defaults.
- `decay`: `DecayedScore`, a lazily decayed value with exact merge rules.
- `fold`: `fold_events(batch, signals, recent) -> StateDelta`, one delta per key per batch.
- `state`: the keys and value types of a `StateDelta`, their merge rules, and the
  `StateReader` read port that serving uses.
- `memory_state`: `MemoryState`, an in-memory state that applies deltas and implements
  `StateReader` (tests and the offline evaluation; production reads PostgreSQL).
- `recommend`: `recommend`, `similar_items`, `trending`, `user_profile` over a `StateReader`.
- `evaluation`: the offline next-basket evaluation behind `magnetar eval`.
- `errors`: the domain errors serving raises (`InvalidRequest`, `UnknownWindow`,
  `UnknownItem`).
"""
