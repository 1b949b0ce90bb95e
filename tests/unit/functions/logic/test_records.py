from __future__ import annotations

import dataclasses

import pytest

from tests.unit.functions.logic.factories import make_event


def test_subject_is_the_user_when_signed_in_else_the_visitor() -> None:
    assert make_event(user_id="u1", anonymous_id="c9").subject_id == "u1"
    assert make_event(user_id="", anonymous_id="c9").subject_id == "c9"


def test_user_key_keeps_user_and_visitor_ids_apart() -> None:
    signed_in = make_event(user_id="same", anonymous_id="")
    visitor = make_event(user_id="", anonymous_id="same")

    assert signed_in.user_key != visitor.user_key


def test_events_are_immutable() -> None:
    event = make_event()

    with pytest.raises(dataclasses.FrozenInstanceError):
        event.user_id = "other"  # type: ignore[misc]


def test_default_attributes_cannot_be_mutated() -> None:
    event = make_event()

    with pytest.raises(TypeError):
        event.attributes["k"] = "v"  # type: ignore[index]
