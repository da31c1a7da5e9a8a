"""The domain set: which experts are active, checked once where a request enters.

`DomainSet(available, requested)` is the only place a request for domains becomes a set:
None means every domain, duplicates and unknown names are refused, and the set is kept in the
order of `available` (the bundle's or the model's), whatever order it was asked in. Gate columns,
composed graphs, traces and reports all follow that order.
"""

from __future__ import annotations

from edgemode import EdgemodeError


MAX_NAME = 64  # domain names become file names (experts/<name>.safetensors, expert.<name>.block<b>.onnx)


def check_domain_name(domain: str) -> str:
    if not domain or len(domain) > MAX_NAME or not all(ch.isalnum() or ch in "-_" for ch in domain):
        raise EdgemodeError(f"invalid domain name {domain[:MAX_NAME]!r}: use up to {MAX_NAME} letters, digits, '-' and '_'")
    return domain


def parse_domains(text: str) -> list[str]:
    """'legal,med' -> ['legal', 'med']; '' -> [] (backbone only)."""
    domains = [check_domain_name(d.strip()) for d in text.split(",") if d.strip()]
    if len(set(domains)) != len(domains):
        raise EdgemodeError(f"duplicate domain in {text!r}")
    return domains


class DomainSet(tuple):
    """The active domains, a tuple of names in the order of `available`, the domains there are.

    It compares equal to any list or tuple of the same names in the same order, so `engine.domains
    == ["legal"]` reads as before.
    """

    def __new__(cls, available, requested=None, where: str = "this bundle") -> "DomainSet":
        """`requested` (a list or tuple of names; None for all of `available`) as a set in the order
        of `available`; unknown and repeated names are refused, naming `where` they were looked for."""
        available = tuple(available)
        if requested is None:
            requested = available
        if isinstance(requested, str) or not isinstance(requested, (list, tuple)):
            raise EdgemodeError(f"domains must be a list of names, got {requested!r}")
        unknown = [d for d in requested if d not in available]
        if unknown:
            raise EdgemodeError(f"unknown domain {unknown[0]!r}; {where} has {', '.join(available) or 'no domains'}")
        if len(set(requested)) != len(requested):
            raise EdgemodeError(f"duplicate domain in {list(requested)}")
        chosen = super().__new__(cls, (d for d in available if d in requested))
        chosen._available = available
        return chosen

    @property
    def available(self) -> tuple[str, ...]:
        return self._available

    @property
    def columns(self) -> list[int]:
        """The gate-logit columns of the backbone and the active experts, in that order: a gate has
        one column for the backbone, then one per available domain."""
        return [0] + [1 + self._available.index(d) for d in self]

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (list, tuple)) else NotImplemented

    def __ne__(self, other) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return "{" + ",".join(self) + "}"
