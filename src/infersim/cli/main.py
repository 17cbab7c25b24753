"""The `infersim` command line: a thin layer over the typed API (catalogs, estimate, simulate,
validate, calibrate). Bad input prints one line and exits with code 2."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from infersim.cli.common import (ENGINE_HELP, catalog_from_options as _catalog, emit_json as _emit_json, err,
                                  fails_cleanly, fmt_g as _g, missing_option, out, refuse_file_options)
from infersim.cli.economics_view import PRICING_HELP
from infersim.datasets import inferencex_points, measurements_csv
from infersim.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Simulate and plan LLM inference on GPUs, LPUs and wafer-scale engines.")
DEFAULT_MEASUREMENTS = measurements_csv()  # the shipped calibration set, wherever the package is installed
DEFAULT_INFERENCEX = inferencex_points()  # the shipped InferenceX serving points
DEFAULT_FIT_OUT = "infersim-fit.json"  # calibrate's output, in the current directory
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the installed infersim package: calibrate never writes here
POOR_ERROR = 0.5  # a row whose in-sample or held-out |error| exceeds this is flagged POOR


@app.command()
@fails_cleanly
def models(as_json: bool = typer.Option(False, "--json", help="machine-readable list")):
    """List catalog models: family, total/active parameters, layers by kind."""
    from infersim.catalog.models import list_models
    rows = list_models()
    if as_json:
        _emit_json(rows)
        return
    t = Table(title="models (parameters computed from config.json; active excludes the input embedding)")
    for c in ("name", "hf_id", "family", "total", "active", "layers (attn/mamba/moe/dense)"):
        t.add_column(c)
    for m in rows:
        k = m["layer_kinds"]
        t.add_row(m["name"], m["hf_id"], m["family"], f"{m['total_params'] / 1e9:.1f}B", f"{m['active_params'] / 1e9:.1f}B",
                  f"{m['layers']} ({k['attention']}/{k['mamba']}/{k['moe']}/{k['dense_ffn']})")
    out.print(t)


def _scaled(q, unit: float) -> str:
    """A catalog Quantity in `unit`s, starred when it is an estimate or an assumption."""
    if q is None or q.value is None:
        return "—"
    return f"{q.value / unit:.4g}" + ("*" if q.basis in ("estimate", "assumption") else "")


@app.command()
@fails_cleanly
def chips(as_json: bool = typer.Option(False, "--json"),
          hardware: Optional[list[Path]] = typer.Option(None, "--hardware", help="extra hardware YAML"),
          set_: Optional[list[str]] = typer.Option(None, "--set", help="override NAME.FIELD=VALUE")):
    """List chips with key specs, each marked spec / estimate / assumption, with sources in --json."""
    cat = _catalog(hardware, set_)
    if as_json:
        _emit_json([c.model_dump() for c in cat.chips.values()])
        return
    t = Table(title="chips (dense peaks; sources and ranges: --json)")
    for c in ("name", "kind", "family", "memory GB", "mem BW TB/s", "bf16 TF", "fp8 TF", "fp4 TF", "TDP W"):
        t.add_column(c)
    for c in cat.chips.values():
        pf = c.peak_flops
        t.add_row(c.name, c.kind, c.family, _scaled(c.mem_bytes, 1e9), _scaled(c.mem_bw_bytes_per_s, 1e12),
                  *(_scaled(pf.get(k), 1e12) for k in ("bf16", "fp8", "fp4")), _scaled(c.tdp_w, 1))
    out.print(t)
    out.print("* estimate or assumption (see `infersim chips --json` for its source and range)")


@app.command()
@fails_cleanly
def systems(as_json: bool = typer.Option(False, "--json"),
            hardware: Optional[list[Path]] = typer.Option(None, "--hardware"),
            set_: Optional[list[str]] = typer.Option(None, "--set")):
    """List named systems (racks, nodes): chips, links, hosts, power."""
    cat = _catalog(hardware, set_)
    if as_json:
        _emit_json([s.model_dump() for s in cat.systems.values()])
        return
    t = Table(title="systems")
    for c in ("name", "chips", "scale-up link (domain)", "scale-out link", "hosts", "power kW"):
        t.add_column(c)
    for s in cat.systems.values():
        t.add_row(s.name, f"{s.n_chips} x {s.chip}", f"{s.scale_up_link or '—'} ({s.scale_up_domain})",
                  s.scale_out_link or "—", f"{s.hosts.count} x {s.hosts.cpu}" if s.hosts else "—",
                  _scaled(s.power_w, 1e3))
    out.print(t)


@app.command()
@fails_cleanly
def estimate(model: Optional[str] = typer.Option(None, help="catalog name, HF repo id, or path to a config.json "
                                                 "(with --deployment: default the file's `model:`)"),
             system: Optional[str] = typer.Option(None, help="chip (h100-sxm, groq-lpu-v1, ...) or system "
                                                  "(gb200-nvl72, ...); required unless --deployment is given"),
             deployment: Optional[Path] = typer.Option(None, "--deployment", help="deployment YAML "
                                                       "(examples/deployments/): GPU, LPU, AFD or speculative-"
                                                       "decoding racks; replaces --system and the layout options"),
             chips: Optional[int] = typer.Option(None, help="chips in total (default: the system's, or tp*pp*ep)"),
             tp: Optional[int] = typer.Option(None), pp: Optional[int] = typer.Option(None, help="default 1"),
             ep: Optional[int] = typer.Option(None, help="default 1"),
             replicas: Optional[int] = typer.Option(None, help="independent model copies"),
             precision: Optional[str] = typer.Option(None, help="bf16, fp16, fp8, int8, fp4, mixed (default: bf16 on GPUs and wafers, mixed 8-bit on LPUs)"),
             kv_precision: Optional[str] = typer.Option(None, help="KV-cache format (default: fp8 with 8-bit weights)"),
             batch: int = typer.Option(1, help="sequences per (decode) replica"),
             input: int = typer.Option(1024, "--input", help="prompt tokens"),
             output: int = typer.Option(128, "--output", help="generated tokens"),
             hardware: Optional[list[Path]] = typer.Option(None, "--hardware", help="extra hardware YAML"),
             set_: Optional[list[str]] = typer.Option(None, "--set", help="override NAME.FIELD=VALUE"),
             calibration: Optional[str] = typer.Option(None, help="fit file, or 'none' for defaults"),
             engine: Optional[str] = typer.Option(None, help=ENGINE_HELP),
             pricing: str = typer.Option("capex", help=PRICING_HELP),
             as_json: bool = typer.Option(False, "--json")):
    """Predict prefill and decode of one static batch: times, tokens/s, bottleneck, memory per chip,
    cost per million tokens. With --deployment: per-user speed, throughput per rack and per MW, where
    the time goes, cost per million tokens and payback per token tier."""
    from infersim.catalog.models import load_model
    from infersim.cli.economics_view import add_json, check_pricing, economics_of, print_economics
    from infersim.economics import throughput_of_static
    check_pricing(pricing)
    from infersim.calibration.efficiency import load_calibration
    from infersim.estimate import estimate as run
    if deployment is not None:
        refuse_file_options({"--system": system, "--tp": tp, "--pp": pp, "--ep": ep, "--chips": chips,
                             "--replicas": replicas, "--precision": precision, "--kv-precision": kv_precision})
        _estimate_deployment(deployment, model, batch, input, output, hardware, set_, calibration, as_json, engine,
                             pricing)
        return
    for name, v in (("--model", model), ("--system", system)):
        if v is None:
            raise missing_option(name)
    catalog = _catalog(hardware, set_)
    e = run(load_model(model), system, batch=batch, input_len=input, output_len=output, chips=chips, tp=tp,
            pp=1 if pp is None else pp, ep=1 if ep is None else ep, replicas=replicas, precision=precision,
            kv_precision=kv_precision, catalog=catalog, calibration=load_calibration(calibration),
            engine=engine)
    d = e.to_dict()
    econ, why = economics_of(e.plan, throughput_of_static(e), catalog, set_, pricing)
    if as_json:
        _emit_json(add_json(d, econ, why))
        return
    par = e.parallel
    moe_ep = f"moe_ep={par['moe_ep']} " if par.get("moe_ep", 1) > 1 else ""  # whole-expert groups at ep 1
    out.print(f"[bold]{e.model}[/] on {e.system} ({e.chips} x {e.chip}), tp={par['tp']} pp={par['pp']} ep={par['ep']} "
              f"{moe_ep}replicas={par['replicas']}, {e.precision}; batch {e.batch} x ({e.input_len} in, {e.output_len} out)")
    t = Table()
    for c in ("phase", "time", "tokens/s (system)", "bottleneck", "compute", "memory", "interconnect", "overhead"):
        t.add_column(c)
    for name, ph in d["phases"].items():
        tot = ph["time_s"]
        t.add_row(name, f"{tot * 1e3:.3g} ms" + (" /step" if name == "decode" else ""), _g(ph["tokens_per_s"]),
                  f"{ph['bottleneck']} {ph['bottleneck_share']:.0%}",
                  *(f"{ph['breakdown'][k] / tot:.0%}" for k in ("compute", "memory", "interconnect", "overhead")))
    out.print(t)
    out.print(f"TTFT {e.ttft_s * 1e3:.3g} ms   TPOT {e.tpot_s * 1e3:.3g} ms   {_g(e.tok_s_per_user)} tok/s per user   "
              f"{_g(e.output_tok_s)} output tok/s (system, whole batch lifecycle)")
    mem = e.memory_per_chip
    out.print("memory per chip (GB): " + ", ".join(f"{k.replace('_bytes', '')} {v / 1e9:.3g}" for k, v in mem.items())
              + f"; max batch at this context: {e.max_batch_at_context}")
    print_economics(econ, why, lambda s: out.print(s, markup=False, highlight=False))
    out.print(f"calibration: {e.calibration}")
    for n in e.notes:
        out.print(f"note: {n}")


def _estimate_deployment(path: Path, model, batch: int, inp: int, outp: int, hardware, set_, calibration,
                         as_json: bool, engine: Optional[str] = None, pricing: str = "capex") -> None:
    from infersim.cli.deployment_view import load_plan, print_estimate
    from infersim.cli.economics_view import add_json, economics_of, print_economics
    from infersim.economics import throughput_of_plan_estimate
    from infersim.estimate import estimate_plan
    plan, catalog = load_plan(path, model, hardware, set_, calibration, engine=engine)
    d = estimate_plan(plan, batch=batch, input_len=inp, output_len=outp)
    econ, why = economics_of(plan, throughput_of_plan_estimate(d), catalog, set_, pricing)
    if as_json:
        _emit_json(add_json(d, econ, why))
        return
    print_estimate(d, plan, catalog, out)
    print_economics(econ, why, lambda s: out.print(s, markup=False, highlight=False))


@app.command()
@fails_cleanly
def validate(measurements: Path = typer.Option(DEFAULT_MEASUREMENTS, help="measurement CSV (calibration schema)",
                                              show_default="the shipped calibration set"),
             calibration: Optional[str] = typer.Option(None, help="fit file, or 'none' for defaults"),
             hardware: Optional[list[Path]] = typer.Option(None, "--hardware"),
             set_: Optional[list[str]] = typer.Option(None, "--set"),
             method: str = typer.Option("simulate", help="serving rows (offline/server/concurrency): 'simulate' "
                                        "with the serving simulator, or 'analytical' (closed form, fast)"),
             jobs: int = typer.Option(min(4, os.cpu_count() or 1), help="local processes for the simulations"),
             deployment: Optional[Path] = typer.Option(None, "--deployment", help="only rows measured on this "
                                                       "deployment file's chips; its spec: section supplies "
                                                       "unpublished speculative-decoding inputs"),
             inferencex: Path = typer.Option(DEFAULT_INFERENCEX, "--inferencex-points", help="InferenceX serving "
                                             "points (the shipped file's format), each predicted by simulating its "
                                             "benchmark client", show_default="the shipped InferenceX points"),
             inferencex_only: bool = typer.Option(False, "--inferencex-only", help="only the InferenceX points"),
             measurements_only: bool = typer.Option(False, "--measurements-only", help="only the measurement CSV"),
             as_json: bool = typer.Option(False, "--json")):
    """Predict every published measurement and InferenceX serving point we can; report errors per
    row, per group and per metric (InferenceX: by interactivity band, feature and hardware)."""
    from infersim.calibration.efficiency import load_calibration
    from infersim.cli.inferencex_view import combined_json, print_inferencex
    from infersim.validation.inferencex_report import validate_inferencex
    from infersim.validation.report import deployment_chips, validate as run
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    if inferencex_only and measurements_only:
        raise InputError("--inferencex-only and --measurements-only exclude each other; give one (or neither for both)")
    from infersim.modes import load_spec
    spec = load_spec(deployment) if deployment is not None else None
    catalog, cal = _catalog(hardware, set_), load_calibration(calibration)
    rep = None if inferencex_only else run(measurements, catalog, cal, method=method, jobs=jobs, deployment=spec)
    ix = None if measurements_only else validate_inferencex(
        inferencex, catalog, cal, jobs=jobs, chips=None if spec is None else deployment_chips(spec, catalog))
    if spec is not None and rep is not None and not rep.rows and not rep.skipped:
        err.print(f"note: no published measurement in {measurements} was taken on the chips of deployment "
                  f"'{spec.name}'; nothing to compare yet")
    if as_json:
        _emit_json(combined_json(None if rep is None else rep.to_dict(), ix, cal.source))
        return
    if rep is not None:
        _print_measurements(rep, method)
    if ix is not None:
        print_inferencex(ix, out)


def rests_on_text(family: dict) -> str:
    """'layer_s 2 (M246, M248), hop_scale 0' from a fit file family's rows_per_parameter (rows whose
    prediction the parameter moves by more than 5%; validation/folds.rows_resting_on)."""
    per = family.get("rows_per_parameter") or {}
    parts = []
    for k, r in per.items():
        ids = r["ids"] if len(r["ids"]) <= 6 else r["ids"][:6] + ["..."]
        parts.append(f"{k} {r['rows']}" + (f" ({', '.join(ids)})" if ids else ""))
    return ", ".join(parts) or "—"


def _print_measurements(rep, method: str) -> None:
    t = Table(title=f"predicted vs measured ({len(rep.rows)} rows; held-out = cross-validated prediction by row "
                    f"folds / by source (no row of its source in the fit); serving rows by "
                    f"{'simulation' if method == 'simulate' else 'closed form'})")
    for c in ("id", "model", "chip", "scenario", "metric", "measured", "predicted", "error", "held-out err",
              "by source", "flag"):
        t.add_column(c)
    for r in rep.rows:
        h, hg = r.heldout_error, r.heldout_grouped_error
        worst = max([abs(r.error)] + [abs(x) for x in (h, hg) if x is not None])
        flag = "POOR (>50%)" if worst > POOR_ERROR else ("assumed inputs" if r.assumptions else "")
        t.add_row(r.id, r.model, r.chip, r.scenario, r.metric, _g(r.measured), _g(r.predicted), f"{r.error:+.0%}",
                  "—" if h is None else f"{h:+.0%}", "—" if hg is None else f"{hg:+.0%}", flag)
    out.print(t)
    if rep.skipped:
        out.print(f"[bold]skipped {len(rep.skipped)} rows[/] (not predicted, with the reason):")
        for s in rep.skipped:
            out.print(f"  {s.id}: {s.reason}", markup=False, highlight=False)
    g = Table(title="absolute error by group: in-sample (current fit) and held-out (cross-validated by row folds, "
                    "and by source: the target applies to this one)")
    for c in ("by", "group", "rows", "median", "mean", "held-out median", "held-out mean", "by-source median",
              "by-source mean", "target"):
        g.add_column(c)
    for x in rep.groups():
        hm, gm = x["heldout_median_abs_err"], x["heldout_grouped_median_abs_err"]
        flag = ""
        if x["target"] is not None and gm is not None:
            flag = " ok" if gm <= x["target"] else " MISSED"
        g.add_row(x["by"], x["group"], str(x["n"]), f"{x['median_abs_err']:.1%}", f"{x['mean_abs_err']:.1%}",
                  "—" if hm is None else f"{hm:.1%}", "—" if hm is None else f"{x['heldout_mean_abs_err']:.1%}",
                  "—" if gm is None else f"{gm:.1%}", "—" if gm is None else f"{x['heldout_grouped_mean_abs_err']:.1%}",
                  "" if x["target"] is None else f"≤{x['target']:.0%}{flag}")
    out.print(g)
    out.print(f"calibration: {rep.calibration}; {len(rep.rows)} rows predicted, {len(rep.skipped)} skipped (listed above)")
    for fam, v in rep.parameters.items():
        out.print(f"  {fam}: " + ", ".join(f"{k}={x:.3g}" for k, x in v["values"].items())
                  + f"; rows each rests on: {rests_on_text(v)}", markup=False, highlight=False)
    for x in rep.groups():
        if x["by"] == "kind":
            hm, gm = x["heldout_median_abs_err"], x["heldout_grouped_median_abs_err"]
            verdict = "" if gm is None else ("meets" if gm <= x["target"] else "MISSES")
            out.print(f"summary {x['group']:5s}: {x['n']:3d} rows, median |error| {x['median_abs_err']:.1%} in-sample, "
                      f"{'—' if hm is None else f'{hm:.1%}'} held-out by row folds, "
                      f"{'—' if gm is None else f'{gm:.1%}'} held out by source ({verdict} the {x['target']:.0%} target)")


@app.command()
@fails_cleanly
def calibrate(measurements: Path = typer.Option(DEFAULT_MEASUREMENTS, help="measurement CSV",
                                               show_default="the shipped calibration set"),
              out_file: Path = typer.Option(Path(DEFAULT_FIT_OUT), "--out",
                                            help="where to write the fit; use it with --calibration FILE"),
              overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file"),
              inferencex: Path = typer.Option(DEFAULT_INFERENCEX, "--inferencex-points", help="InferenceX serving "
                                              "points fitted beside the CSV (aggregated, no MTP; closed form)",
                                              show_default="the shipped InferenceX points"),
              no_inferencex: bool = typer.Option(False, "--no-inferencex", help="fit on the measurement CSV only"),
              as_json: bool = typer.Option(False, "--json")):
    """Fit per-family efficiency parameters to a measurement CSV and InferenceX points, with
    cross-validation. Writes the fit to --out (never into the installed package: the shipped fit
    changes by a commit)."""
    from infersim.results import check_out_file
    from infersim.validation.fit import calibrate as run, write_fit
    check_out_file(out_file, overwrite=overwrite, not_inside=PACKAGE_DIR,
                   why_not_inside="the shipped fit changes only through a commit: write the fit elsewhere (e.g. "
                                  f"--out {DEFAULT_FIT_OUT}), check it with --calibration FILE, then copy it in")
    res = run(measurements, inferencex=None if no_inferencex else inferencex)
    write_fit(res, out_file)
    if as_json:
        _emit_json(res.fit_file)
        return
    t = Table(title=f"fitted parameters ({len(res.plans)} rows used, {len(res.skipped)} skipped, "
                    f"{len(res.inferencex_skipped or [])} InferenceX points kept out) -> {out_file}")
    for c in ("family", "values", "rows (CSV + InferenceX)", "rows each rests on", "at grid edge (a bound, not an estimate)"):
        t.add_column(c)
    for fam, v in res.fit_file["families"].items():
        n = v["rows_by_set"]
        t.add_row(fam, ", ".join(f"{k}={x:.3g}" for k, x in v["values"].items()),
                  f"{n['measurements']} + {n['inferencex']}", rests_on_text(v),
                  ", ".join(f"{k} at {e}" for k, e in v["at_grid_edge"].items()) or "—")
    out.print(t)
    check = res.fit_file["fold_seed_check"]
    for kind, spread in check["row_folds_spread"].items():
        meds = [m for m in check["row_folds"][kind] if m is not None]
        grouped = check["source_grouped"][kind]
        ix = check["inferencex_configuration_grouped"].get(kind)
        loo = check.get("row_folds_leave_one_out", {}).get(kind)
        out.print(f"{kind}: closed-form held-out median "
                  + ("" if loo is None else f"{loo:.1%} by leave-one-out rows (no seed; ")
                  + f"one random {res.fit_file['folds']}-fold split: {min(meds):.1%}-{max(meds):.1%} over "
                  f"{len(check['seeds'])} seeds, spread {spread:.1%}" + ("" if loo is None else ")") + ", "
                  f"{'—' if grouped is None else f'{grouped:.1%}'} by source (no seed)"
                  + ("" if ix is None else f"; InferenceX points {ix:.1%} by configuration"),
                  markup=False, highlight=False)
    by_tag = check.get("inferencex_configuration_grouped_by_tag", {})
    for metric, tags in by_tag.items():
        out.print(f"InferenceX {metric} held out by configuration: " + ", ".join(
            f"{t} {v['median_abs_err']:.1%} (n {v['n']})" for t, v in tags.items()), markup=False, highlight=False)
    out.print(f"run `infersim validate --calibration {out_file}` to see in-sample and held-out errors with this fit",
              markup=False, highlight=False)


# `infersim simulate` lives in its own module (it only imports this one lazily, at call time).
from infersim.cli.simulate_cmd import simulate as _simulate  # noqa: E402

app.command(name="simulate")(fails_cleanly(_simulate))


def main() -> None:  # pragma: no cover - console entry point wrapper
    app()


# `infersim sensitivity`: its own module, like simulate.
from infersim.cli.sensitivity_cmd import sensitivity as _sensitivity  # noqa: E402

app.command(name="sensitivity")(fails_cleanly(_sensitivity))


# `infersim sweep` and `infersim query`: their own module (infersim/sweep/ does the work).
from infersim.cli.sweep_cmd import query as _query, sweep as _sweep  # noqa: E402

app.command(name="sweep")(fails_cleanly(_sweep))
app.command(name="query")(fails_cleanly(_query))


# `infersim frontier`: its own module (infersim/planner/ does the work).
from infersim.cli.frontier_cmd import frontier as _frontier  # noqa: E402

app.command(name="frontier")(fails_cleanly(_frontier))


# `infersim plan`: its own module (infersim/planner/plan.py does the work).
from infersim.cli.plan_cmd import plan as _plan  # noqa: E402

app.command(name="plan")(fails_cleanly(_plan))


# `infersim report`: its own module (infersim/reports/ does the work).
from infersim.cli.report_cmd import report as _report  # noqa: E402

app.command(name="report")(fails_cleanly(_report))


# `infersim serve`: the local dashboard, its own module (infersim/dashboard/ does the work).
from infersim.cli.serve_cmd import serve as _serve  # noqa: E402

app.command(name="serve")(fails_cleanly(_serve))
