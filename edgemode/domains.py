"""Domain names: parsing `--domains` and checking a request against what is available."""

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


def check_domains(available: list[str], requested, where: str) -> list[str]:
    """`requested` as a list, if every name is in `available` and none repeats."""
    if isinstance(requested, str) or not isinstance(requested, (list, tuple)):
        raise EdgemodeError(f"domains must be a list of names, got {requested!r}")
    requested = list(requested)
    unknown = [d for d in requested if d not in available]
    if unknown:
        raise EdgemodeError(f"unknown domain {unknown[0]!r}; {where} has {', '.join(available) or 'no domains'}")
    if len(set(requested)) != len(requested):
        raise EdgemodeError(f"duplicate domain in {requested}")
    return requested
