"""Helpers every CLI command shares: the consoles, the clean-failure wrapper, JSON output, the
catalog built from --hardware/--set, number formats, and refusing options a deployment file decides.
Command modules import this one; none imports another command module."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from infersim.errors import InputError, shown

# Wide enough for the tables when output is not a terminal (pipes, CI logs).
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


ENGINE_HELP = ("GPU serving engine: sglang, trtllm, trtllm-cpp, vllm, vllm-sync, dynamo-sglang/-trtllm/-vllm "
               "(catalog/data/engines.yaml; default vllm; overrides a deployment file's engine.name)")
LONGEST_WORD = 200  # characters; a longer run without spaces in an error is an echoed value, cut short


def one_line(message: str) -> str:
    """`message` on one line, every unbroken run longer than LONGEST_WORD cut by `shown` (a safety
    net for a value echoed whole: errors should already use `shown`)."""
    return " ".join(w if len(w) <= LONGEST_WORD else shown(w) for w in message.split())


def fails_cleanly(fn):
    """Turn InputError (and an unforeseen file or memory failure) into one line on stderr and exit code 2."""
    @functools.wraps(fn)
    def run(*a, **kw):
        try:
            return fn(*a, **kw)
        except InputError as e:
            err.print(f"error: {one_line(str(e))}", markup=False, highlight=False)
            raise typer.Exit(2) from None
        except BrokenPipeError:  # the reader of stdout went away (`| head`): not the user's input
            raise
        except OSError as e:  # a file problem no reader anticipated: still one line, never a traceback
            from infersim.inputs import os_problem
            where = f" '{shown(e.filename)}'" if e.filename else ""
            err.print(f"error: cannot use{where}: {os_problem(e)}; check the path and its permissions",
                      markup=False, highlight=False)
            raise typer.Exit(2) from None
        except MemoryError:  # the commands estimate their need first; this catches what they could not foresee
            err.print("error: out of memory; use a smaller workload (--requests, trace length) or a machine with "
                      "more memory", markup=False, highlight=False)
            raise typer.Exit(2) from None
    return run


def emit_json(obj) -> None:
    """`obj` as JSON on stdout; NaN/inf are refused with one error line (they are not JSON)."""
    from infersim.results import json_text
    sys.stdout.write(json_text(obj, indent=1))


def catalog_from_options(hardware: list[Path] | None, overrides: list[str] | None):
    """The hardware catalog with --hardware files and --set overrides; ``economics.*`` overrides
    are checked here (an unknown key fails every command alike) and applied by prices_from_options."""
    from infersim.catalog.hardware import load_catalog
    from infersim.economics.prices import split_overrides
    hw, prices = split_overrides(overrides)
    if prices:
        prices_from_options(prices)
    cat = load_catalog(tuple(hardware or ()))
    return cat.with_overrides(hw) if hw else cat


def prices_from_options(overrides: list[str] | None):
    """The economics inputs (catalog/data/economics.yaml) with the ``economics.*`` --set overrides."""
    from infersim.economics.prices import load_prices, split_overrides
    return load_prices(overrides=split_overrides(overrides)[1])


def fmt_g(x: float) -> str:
    return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def fmt_ms(x) -> str:
    """Seconds as milliseconds: 3 significant digits below 1 ms, then 2 or 1 decimals."""
    if x is None:
        return "—"
    v = x * 1e3
    return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}" if abs(v) < 10 else f"{v:,.1f}"


def fmt_pct(x) -> str:
    return "—" if x is None else f"{x:.1%}"


# command-line option -> the deployment file's field that decides it
FILE_DECIDES = {
    "--system": "gpu.system / lpu.system",
    "--tp": "gpu.tp",
    "--pp": "gpu.pp",
    "--ep": "gpu.ep",
    "--dp-attention": "gpu.dp_attention (prefill/decode.dp_attention)",
    "--chips": "gpu.racks / lpu.racks / lpu.chips",
    "--replicas": "gpu.racks / lpu.racks (replicas follow from them)",
    "--precision": "gpu.precision / lpu.precision",
    "--kv-precision": "gpu.kv_precision",
    "--prefill-replicas": "gpu.prefill_replicas",
    "--decode-replicas": "gpu.racks and gpu.prefill_replicas",
    "--decode-system": "gpu.system",
    "--decode-tp": "decode.tp",
    "--decode-ep": "decode.ep",
    "--prefill-tp": "prefill.tp",
    "--prefill-ep": "prefill.ep",
    "--spec": "spec.method",
    "--spec-k": "spec.k",
    "--spec-acceptance": "spec.acceptance",
    "--draft-model": "spec.draft_model",
}

def missing_option(name: str) -> Exception:
    """The usage error typer gives for a missing required option (exit code 2, 'Missing option ...')."""
    try:
        from typer._click.exceptions import MissingParameter
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - typer versions that use click itself
        from click import get_current_context
        from click.exceptions import MissingParameter
    return MissingParameter(ctx=get_current_context(silent=True), param_hint=f"'{name}'", param_type="option")


def refuse_file_options(given: dict[str, Any]) -> None:
    """One InputError naming every command-line option (given = not None) that the file decides."""
    clash = [o for o, v in given.items() if v is not None]
    if not clash:
        return
    fields = "; ".join(f"{o} -> {FILE_DECIDES[o]}" for o in clash)
    them = "it" if len(clash) == 1 else "them"
    raise InputError(f"{', '.join(clash)} cannot be combined with --deployment: the deployment file decides "
                     f"{them} ({fields}); drop {them} or edit the file")


