"""edgemode: Modular Domain Experts (MoDE) exported to ONNX and run on-device.

The stages live in their own subpackages: `edgemode.model` (the PyTorch MoDE model),
`edgemode.export`, `edgemode.quantize`, `edgemode.bundle`, `edgemode.runtime`, `edgemode.devices`,
`edgemode.explain`.
"""

import hashlib

__version__ = "0.1.0"


class EdgemodeError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


def first_line(e: BaseException) -> str:
    """An exception's message as one line (libraries' messages can span many), or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def os_error_text(e: OSError) -> str:
    """'No space left on device (/path)': an OSError as one short phrase."""
    return f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")


def sha256(path) -> str:
    """The hex sha256 of a file's bytes (bundle files, expert files, pinned wheels)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path, error: type[EdgemodeError] = EdgemodeError) -> dict:
    """A JSON object from `path`, or `error` with a one-line reason (missing, not UTF-8, not JSON)."""
    import json

    try:
        value = json.loads(open(path, "rb").read().decode("utf-8"))
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise error(f"{path} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise error(f"{path} must hold a JSON object")
    return value
