"""Writing a directory atomically: build it in a temporary directory beside the target, then swap.

A crash at any point leaves the previous directory (if any) as it was, and no half-written one
under the target's name. Used for bundles and for onnxruntime-genai folders. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgemode import EdgemodeError, os_error_text


def check_target(out: Path, marker: str, what: str) -> None:
    """Refuse to replace anything but an empty directory or a previous one of ours (it has `marker`)."""
    nearest = next(p for p in (out.parent, *out.parent.parents) if p.exists())
    if not nearest.is_dir():
        raise EdgemodeError(f"cannot write {what} at {out}: {nearest} is not a directory; nothing was written")
    if out.exists() and not (out.is_dir() and ((out / marker).is_file() or not any(out.iterdir()))):
        raise EdgemodeError(f"{out} exists and is not {what}; refusing to overwrite it")


def temporary_beside(out: Path, what: str) -> Path:
    """A fresh private directory next to `out`, after removing those that killed writers left there."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in out.parent.glob(f".{out.name}.tmp-*-*"):
            pid = stale.name[len(f".{out.name}.tmp-"):].split("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():  # its process is gone
                shutil.rmtree(stale, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    except OSError as e:
        raise EdgemodeError(f"cannot write {what} at {out}: {e.strerror}; nothing was written") from e


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextmanager
def staged(out: Path, marker: str, what: str) -> Iterator[Path]:
    """A fresh directory to build `what` in, published at `out` when the block ends (see
    check_target and `marker`). On any error it is removed and `out` is left as it was; an OSError
    (a full disk, a permission or quota) becomes one line saying so."""
    check_target(out, marker, what)
    tmp = temporary_beside(out, what)
    try:
        yield tmp
        publish(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            kept = "; the previous one there is unchanged" if (out / marker).is_file() else ""
            raise EdgemodeError(f"writing {what} at {out} failed: {os_error_text(e)}; nothing was written{kept}") from e
        raise


def publish(tmp: Path, out: Path) -> None:
    """Move a finished directory from `tmp` to `out`, replacing a previous one there atomically."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it private
    if not out.exists():
        os.rename(tmp, out)
        return
    if not _exchange(tmp, out):
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        tmp = old
    shutil.rmtree(tmp)
