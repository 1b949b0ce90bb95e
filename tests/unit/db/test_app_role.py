"""Which database roles the gateway and functions refuse: those row-level security skips."""

from __future__ import annotations

import pytest

from magnetar.db.app_role import RoleFacts, role_problem

SAFE = RoleFacts("magnetar_app", False, False, False, ())


def test_an_ordinary_role_is_accepted() -> None:
    assert role_problem(SAFE) is None


@pytest.mark.parametrize(
    ("facts", "said"),
    [
        (RoleFacts("pg", True, False, False, ()), "is a superuser"),
        (RoleFacts("r", False, True, False, ()), "is BYPASSRLS"),
        (RoleFacts("r", False, False, True, ()), "the owner of the database"),
        (RoleFacts("r", False, False, False, ("api_keys",)), "the owner of tables api_keys"),
    ],
)
def test_each_way_around_row_level_security_is_refused(facts: RoleFacts, said: str) -> None:
    problem = role_problem(facts)
    assert problem is not None
    assert said in problem.problem
    assert "MAGNETAR_DATABASE_URL" in problem.fix
    assert "\n" not in str(problem)


def test_many_owned_tables_are_named_briefly() -> None:
    tables = tuple(f"t{n}" for n in range(10))
    problem = role_problem(RoleFacts("owner", False, False, True, tables))
    assert problem is not None
    assert "tables t0, t1, t2 and 7 more" in problem.problem
    assert "the owner of the database, the owner of tables" in problem.problem
