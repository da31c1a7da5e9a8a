"""The domain set: checked once, kept in the order of the domains there are, owner of the gate columns."""

import pytest

from edgemode import EdgemodeError
from edgemode.domains import DomainSet

AVAILABLE = ["legal", "med", "code"]


@pytest.mark.parametrize("requested, names, columns", [
    (None, ("legal", "med", "code"), [0, 1, 2, 3]),
    ([], (), [0]),
    (["code", "legal"], ("legal", "code"), [0, 1, 3]),
    (("med",), ("med",), [0, 2]),
])
def test_a_request_becomes_a_set_in_the_available_order(requested, names, columns):
    chosen = DomainSet(AVAILABLE, requested)
    assert tuple(chosen) == names and chosen.columns == columns and chosen.available == tuple(AVAILABLE)
    assert chosen == list(names) and chosen == names and not chosen != list(names)
    assert DomainSet(AVAILABLE, chosen) == chosen  # a set passed on is taken as it is


@pytest.mark.parametrize("requested, message", [
    ("legal", "domains must be a list of names"),
    ({"legal"}, "domains must be a list of names"),
    (["legal", "tax"], "unknown domain 'tax'; this model has legal, med, code"),
    (["med", "med"], "duplicate domain"),
])
def test_bad_requests_are_refused(requested, message):
    with pytest.raises(EdgemodeError, match=message):
        DomainSet(AVAILABLE, requested, "this model")
