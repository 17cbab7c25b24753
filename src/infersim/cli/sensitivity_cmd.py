"""`infersim sensitivity`: how a deployment's headline result moves across each uncertain input's
range (estimates and assumptions of the hardware catalog, two calibration assumptions), so a
reader sees which unknown matters. A thin layer over `infersim.deployments.sensitivity`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from infersim.errors import InputError

BAR = 12  # characters on each side of the tornado's axis
MIN_BAR = 0.005  # a change of at least 0.5% gets at least one character
UNITS = {"ttft_s": ("ms", 1e3), "tpot_s": ("ms", 1e3), "cost_per_mtok_output_usd": ("USD/Mtok", 1.0),
         "cost_per_mtok_input_usd": ("USD/Mtok", 1.0)}


def _num(x: float) -> str:
    return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _input_value(name: str, v: float) -> str:
    """An input value in a readable unit, picked from the field its name ends with."""
    field = name.rsplit(".", 1)[-1]
    if ".peak_flops." in name:
        return f"{v / 1e15:.3g} PFLOP/s" if v >= 1e15 else f"{v / 1e12:.3g} TFLOP/s"
    if field.endswith("_s"):
        return f"{v * 1e3:.3g} ms" if v >= 1e-3 else f"{v * 1e6:.3g} µs"
    if field.endswith("bytes_per_s_per_dir") or field.endswith("bytes_per_s"):
        return f"{v / 1e9:,.4g} GB/s"
    if field.endswith("_bytes"):
        return f"{v / 1e9:,.4g} GB"
    if field.endswith("_w"):
        return f"{v / 1e3:,.4g} kW" if v >= 1e4 else f"{v:,.4g} W"
    return f"{v:.4g}"


def _metric_value(metric: str, v: float | None) -> str:
    if v is None:
        return "does not fit"
    unit, scale = UNITS.get(metric, ("", 1.0))
    return f"{_num(v * scale)}{(' ' + unit) if unit else ''}"


def _swing(s: float | None) -> str:
    if s is None:
        return "—"
    return "0" if s == 0 else ("<0.1%" if s < 0.001 else f"{s:.1%}")


def _bar(row, baseline: float, scale: float) -> str:
    """Tornado bar: left of the axis the metric falls, right it rises; '░' marks the change with the
    input at its low end, '█' at its high end (on one side, the smaller is drawn over the larger)."""
    if not row.fits:
        return " " * BAR + "✗"
    left, right = [" "] * BAR, [" "] * BAR
    ends = [((row.metric_low - baseline) / baseline, "░"), ((row.metric_high - baseline) / baseline, "█")]
    for d, glyph in sorted(ends, key=lambda e: -abs(e[0])):  # the larger first, the smaller drawn over it
        n = min(BAR, max(round(BAR * abs(d) / scale), int(abs(d) >= MIN_BAR))) if scale > 0 else 0
        for i in range(n):
            if d > 0:
                right[i] = glyph
            else:
                left[BAR - 1 - i] = glyph
    return "".join(left) + "│" + "".join(right)


def sensitivity(
    deployment: Path = typer.Option(..., "--deployment", help="deployment YAML (see examples/deployments/)"),
    model: Optional[str] = typer.Option(None, help="catalog name, HF repo id, or config.json (default: the file's)"),
    metric: str = typer.Option("tok_s_per_user", help="tok_s_per_user, output_tok_s, tok_s_per_rack, tok_s_per_mw, "
                               "ttft_s, tpot_s, cost_per_mtok_output_usd or cost_per_mtok_input_usd (the cost "
                               "metrics also sweep prices and economics assumptions)"),
    pricing: str = typer.Option("capex", help="for the cost metrics: capex (bought) or cloud (rented)"),
    batch: int = typer.Option(1, help="sequences per decode replica"),
    input: int = typer.Option(1024, "--input", help="prompt tokens"),
    output: int = typer.Option(256, "--output", help="generated tokens"),
    hardware: Optional[list[Path]] = typer.Option(None, "--hardware", help="extra hardware YAML"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override NAME.FIELD=VALUE (an overridden number "
                                             "has no range, so it is not swept)"),
    calibration: Optional[str] = typer.Option(None, help="fit file, or 'none' for defaults"),
    top: Optional[int] = typer.Option(None, help="show only the N most sensitive inputs"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
):
    """How a deployment's headline metric moves across each estimate's and assumption's range."""
    from infersim.cli.common import catalog_from_options as _catalog, emit_json as _emit_json, out, prices_from_options
    from infersim.calibration.efficiency import load_calibration
    from infersim.deployments.sensitivity import sensitivity as run
    from infersim.modes import load_spec

    if top is not None and top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    spec = load_spec(deployment)
    rep = run(spec, model, metric=metric, batch=batch, input_len=input, output_len=output,
              catalog=_catalog(hardware, set_), calibration=load_calibration(calibration),
              prices=prices_from_options(set_), pricing=pricing)
    if as_json:
        _emit_json(rep.to_dict(top))
        return
    rows = rep.rows if top is None else rep.rows[:top]
    out.print(f"[bold]{rep.deployment}[/] ({rep.mode}), {rep.model}; batch {rep.batch} x ({rep.input_len} in, "
              f"{rep.output_len} out): {rep.metric} = {_metric_value(rep.metric, rep.baseline)}")
    scale = max((abs(v - rep.baseline) / rep.baseline for r in rep.rows if r.fits
                 for v in (r.metric_low, r.metric_high)), default=0.0)
    t = Table(title=f"sensitivity of {rep.metric}: each input at the low and the high end of its range, "
                    f"all others at their values ({len(rows)} of {len(rep.rows)} inputs)")
    for c, kw in (("input", {"no_wrap": True}), ("basis", {}), ("low → high", {}),
                  ("at low", {"justify": "right"}), ("at high", {"justify": "right"}), ("swing", {"justify": "right"}),
                  ("− change +", {"no_wrap": True})):
        t.add_column(c, **kw)
    for r in rows:
        t.add_row(r.name, r.basis, f"{_input_value(r.name, r.low)} → {_input_value(r.name, r.high)}",
                  _metric_value(rep.metric, r.metric_low), _metric_value(rep.metric, r.metric_high),
                  _swing(r.swing), _bar(r, rep.baseline, scale))
    out.print(t)
    out.print("swing = |metric at high - metric at low| / baseline; bars: ░ input at low, █ input at high "
              f"(full bar = {scale:.0%} change); sources and notes: --json", markup=False, highlight=False)
    for r in rep.breaking:
        for end, err in (("low", r.low_error), ("high", r.high_error)):
            if err is not None:
                out.print(f"{r.name} at its {end} end: {err}", markup=False, highlight=False)
    best = rep.most_sensitive
    if best is not None:
        out.print(f"most sensitive: {best.name} (swing {best.swing:.1%})", markup=False, highlight=False)
    else:
        out.print("most sensitive: none (no uncertain input with a range is used by this deployment)"
                  if not rep.rows else "most sensitive: every swept input breaks the deployment at one end",
                  markup=False, highlight=False)
    if rep.breaking:
        out.print("can make the deployment impossible: " + ", ".join(r.name for r in rep.breaking),
                  markup=False, highlight=False)
    out.print(f"calibration: {rep.calibration}", markup=False, highlight=False)
