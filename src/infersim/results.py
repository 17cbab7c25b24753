"""Writing results so that nothing is lost: checking an output path before a long run, JSON that
refuses NaN/inf, and files and result directories written atomically with the user's umask.

A result directory is written into a hidden temporary directory beside the target, then renamed
into place (on Linux swapped with the old one in one step), so a run killed at any moment leaves
the previous complete results or the new complete results, never a mix. Temporary names start
with '.' and hold the target's name, e.g. ``.run1.partial-1234-5f3a``."""
from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from infersim.errors import InputError, shown
from infersim.inputs import os_problem, path_kind


# ----------------------------------------------------------------------------- JSON

def _first_non_finite(obj: Any, where: str = "") -> tuple[str, float] | None:
    """(dotted path, value) of the first NaN/inf number in `obj`, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "(top level)", obj)
    if isinstance(obj, Mapping):
        items: Iterable[tuple[str, Any]] = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for path, v in items:
        hit = _first_non_finite(float(v) if _is_number(v) else v, path)
        if hit is not None:
            return hit
    return None


def _is_number(v: Any) -> bool:
    return hasattr(v, "__float__") and not isinstance(v, (bool, int, str, Mapping, list, tuple))


def json_text(obj: Any, *, indent: int = 1, sort_keys: bool = False) -> str:
    """`obj` as JSON text with a trailing newline. NaN and inf are not JSON: instead of writing
    them, raise one InputError naming where the first one is (numpy scalars become floats)."""
    try:
        return json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False, default=float) + "\n"
    except ValueError:
        hit = _first_non_finite(obj)
        where = f" at '{hit[0]}' ({hit[1]})" if hit else ""
        raise InputError(f"the result holds a non-finite number{where}, which JSON cannot carry; an input it "
                         "depends on is zero, negative or out of range: check the --set, --hardware and "
                         "--calibration values") from None


# ----------------------------------------------------------------------------- checks before a run

def _probe_writable(folder: Path, option: str, target: Path) -> None:
    """Create `folder` if missing and prove that files can be created and renamed there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{target.name[:40]}.probe-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"{option} '{shown(target)}': cannot write there ({os_problem(e)}); "
                         "pick a writable location") from None


def check_out_dir(path: str | os.PathLike[str], result_names: Iterable[str], *, overwrite: bool,
                  option: str = "--out") -> Path:
    """Before a long run: `path` must be a new or empty directory, or (with `overwrite`) one that
    holds only earlier results (`result_names`); its parent is created and must be writable."""
    target = Path(path)
    kind = path_kind(target, option)
    if kind == "file":
        raise InputError(f"{option} '{shown(target)}' is a file; give a directory (it is created if missing)")
    if kind == "dir":
        held = _visible_entries(target)
        foreign = sorted(set(held) - set(result_names))
        if foreign:
            raise InputError(f"{option} '{shown(target)}' holds other files ({shown(', '.join(foreign))}); "
                             "give a new or empty directory for the results")
        if held and not overwrite:
            raise InputError(f"{option} '{shown(target)}' already holds results ({', '.join(sorted(held))}); "
                             "pass --overwrite to replace them, or give a new directory")
    _probe_writable(target.resolve().parent, option, target)
    return target


def check_out_file(path: str | os.PathLike[str], *, overwrite: bool, option: str = "--out",
                   not_inside: Path | None = None, why_not_inside: str = "") -> Path:
    """Before a run that ends by writing the file `path`: not a directory, not an existing file
    unless `overwrite`, not inside `not_inside`; its folder is created and must be writable."""
    target = Path(path)
    kind = path_kind(target, option)
    if kind == "dir":
        raise InputError(f"{option} '{shown(target)}' is a directory; give a file name")
    if not_inside is not None and target.resolve().is_relative_to(not_inside.resolve()):
        raise InputError(f"{option} '{shown(target)}' lies inside {not_inside}; {why_not_inside}")
    if kind == "file" and not overwrite:
        raise InputError(f"{option} '{shown(target)}' exists; pass --overwrite to replace it, or give a new name")
    _probe_writable(target.resolve().parent, option, target)
    return target


def _visible_entries(folder: Path) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if not n.startswith(".")]
    except OSError as e:
        raise InputError(f"cannot list '{shown(folder)}': {os_problem(e)}; give another directory") from None


# ----------------------------------------------------------------------------- atomic writes

def _temp_name(target: Path, tag: str) -> Path:
    return target.parent / f".{target.name[:60]}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def _write_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create `path` (mode 0666 less the umask, like any program's output) and fsync it."""
    with open(path, "xb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def write_file_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` through a temporary file beside it, renamed into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target, "partial")
    try:
        _write_file(tmp, lambda f: f.write(data))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # old kernel or a file system without it
        return False
    raise OSError(code, os.strerror(code), str(b))


def write_dir_atomically(path: str | os.PathLike[str], writers: Mapping[str, Callable[[BinaryIO], None]]) -> Path:
    """Write the files `writers` names (file name -> function writing its bytes) as the directory
    `path`, replacing an earlier one that holds only files of those names (anything else there is
    refused, so nothing of the user's is deleted). Atomic: see the module docstring."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if path_kind(target, "result directory") == "dir":
        foreign = sorted(set(_visible_entries(target)) - set(writers))
        if foreign:
            raise InputError(f"'{shown(target)}' holds other files ({shown(', '.join(foreign))}); "
                             "give a new or empty directory for the results")
    tmp = _temp_name(target, "partial")
    os.mkdir(tmp)  # mode 0777 less the umask
    try:
        for name, write in writers.items():
            _write_file(tmp / name, write)
        if path_kind(target, "result directory") != "dir":
            os.rename(tmp, target)
        elif _exchange(tmp, target):  # tmp now holds the old results
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # two renames; a kill between them leaves the old results complete in `old`
            old = _temp_name(target, "old")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
