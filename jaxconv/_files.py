"""Files that are either absent, unchanged or complete: written to a temporary name beside them, then renamed.

A kill mid-write leaves at most a ``.tmp-PID`` file beside the target, never a half-written target.
"""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes | str, *, durable: bool = False) -> None:
    """Writes ``data`` to ``path`` atomically (a temporary file in the same folder, then ``os.replace``).

    Args:
      path: the file to write; its folder must exist.
      data: the contents (``str`` is written as UTF-8).
      durable: also ``fsync`` the file before the rename and the folder after it, so the new contents survive a
        power loss (checkpoints need it; figures and tables do not).

    Examples:
      >>> import os, pathlib, tempfile
      >>> from jaxconv._files import write_atomic
      >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
      >>> write_atomic(path, "hello\\n")
      >>> pathlib.Path(path).read_text(), os.listdir(os.path.dirname(path))
      ('hello\\n', ['a.txt'])
    """
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if durable:
        _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without folder handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["write_atomic"]
