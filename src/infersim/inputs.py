"""Checks where user input enters: files named on the command line, and numbers with a physical
meaning (rates, durations). Each failure is one :class:`InputError` line naming the problem and the fix.

Sane ranges: the bounds below are not model constants; they only refuse values that no serving
workload has (a request every 30 years, a million-fold trace compression) and that would otherwise
print 300-digit durations or run forever. Each error names its bound."""
from __future__ import annotations

import errno
import math
import os
import stat
from pathlib import Path
from typing import Literal

from infersim.errors import InputError, shown

# requests per second of a synthetic open loop: about one request a day up to a million a second
RATE_RANGE_PER_S = (1e-5, 1e6)
# factor dividing a trace's arrival times (--rate-scale)
RATE_SCALE_RANGE = (1e-6, 1e6)
# coefficient of variation of gamma inter-arrival times: 0.01 is near-periodic, 100 extreme bursts
CV_RANGE = (1e-2, 1e2)
# a latency target (--slo): 1 microsecond to one day
DURATION_RANGE_S = (1e-6, 86_400.0)
# tokens per KV-cache block: vLLM offers 1 to 256 on GPUs, TensorRT-LLM 32 to 128; 4096 leaves room
# for any engine while refusing a block that holds a whole context (and leaves no room for a cache)
BLOCK_TOKENS_RANGE = (1, 4096)


def os_problem(e: OSError) -> str:
    """What an OSError means for a path the user gave, in words."""
    if e.errno == errno.ENAMETOOLONG:
        return "the name is longer than the file system allows"
    if e.errno == errno.ENOENT:
        return "not found"
    if e.errno == errno.EISDIR:
        return "is a directory, not a file"
    if e.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a directory"
    if e.errno == errno.EEXIST:
        return "a file is in the way of a directory of that name"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "the file system is read-only"
    if e.errno == errno.ENOSPC:
        return "no space left on the device"
    return e.strerror or str(e)


def path_kind(path: str | os.PathLike[str], what: str) -> Literal["file", "dir"] | None:
    """'file', 'dir' or None (nothing there) for a user's path; InputError if it cannot even be looked
    up (a name longer than the file system allows, a file used as a folder, no permission)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            return None
        raise InputError(f"{what} '{shown(path)}': {os_problem(e)}; give a shorter or accessible path") from None
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


def read_user_text(path: str | os.PathLike[str], what: str, fix: str) -> str:
    """The UTF-8 text of a file the user named. `what` names it in the error ("hardware file"),
    `fix` says what to give instead. A directory, a missing or unreadable file, a name longer than
    the file system allows and binary content each give one InputError line."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {what} '{shown(path)}': {os_problem(e)}; {fix}") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} '{shown(path)}' is not UTF-8 text (a binary file?); {fix}") from None


def read_yaml_mapping(path: str | os.PathLike[str], what: str, fields: str, fix: str) -> dict:
    """The mapping of fields a user's YAML file holds (`fields` names the expected ones in the
    error); a file that cannot be read, is not YAML or holds no mapping is one InputError line."""
    import yaml
    p = Path(path)
    text = read_user_text(p, what, fix)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"{shown(p.name)}: not readable YAML ({str(e).splitlines()[0]}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise InputError(f"{shown(p.name)}: expected a mapping of fields ({fields}), got {type(raw).__name__}; {fix}")
    return raw


def check_in_range(label: str, value: float, bounds: tuple[float, float], unit: str = "") -> float:
    """`value` if it is finite and within `bounds` (inclusive), else an InputError naming the bound."""
    low, high = bounds
    u = f" {unit}" if unit else ""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{label} must be a finite number, got {shown(value)}")
    if value < low or value > high:
        raise InputError(f"{label} {_number(value)}{u} is outside the sane range [{_number(low)}, {_number(high)}]{u}; "
                         f"give a value within it")
    return float(value)


def _number(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def validated(model_cls, raw, where: str, fix: str):
    """`raw` validated as pydantic `model_cls`; the first problem is one InputError line naming the
    field: "<where>: field '<a.b>': <problem>; <fix>"."""
    from pydantic import ValidationError
    try:
        return model_cls.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
        raise InputError(f"{where}: field '{loc}': {msg}; {fix}") from None
