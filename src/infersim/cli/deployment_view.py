"""`--deployment FILE` for `infersim estimate` and `infersim simulate`: loading the file into a plan,
refusing command-line options the file decides, and printing the results (racks, power, where the
time goes, the AFD / speculative-decoding parts, SLO classes)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.table import Table

from infersim.cli.common import catalog_from_options as _catalog, fmt_g as _g, fmt_ms as _ms
from infersim.errors import InputError
from infersim.modes._speculative import fmt_acceptance

BOTTLENECK_MEANS = {
    "chain": "the per-layer GPU->LPU->GPU round trip chain of one micro-batch (step overhead + attention + FFN + "
             "link above) bounds per-user speed; more micro-batches or LPU racks do not shorten it",
    "gpu": "the GPUs' attention throughput bounds the step (each GPU replica runs every micro-batch's attention)",
    "lpu": "the LPU FFN pool's throughput bounds the step (its layer stages serve every attention replica's "
           "micro-batches)",
    "link": "the GPU<->LPU link's bandwidth bounds the step (every micro-batch's hidden states cross it twice "
            "per FFN layer)",
    "host": "the serving engine's host work per step (scheduling, sampling; catalog/data/engines.yaml) is longer "
            "than the GPU side it overlaps",
}


def load_plan(path: Path | None, model: Optional[str], hardware, set_, calibration, options: dict | None = None,
              sizing=None, engine: Optional[str] = None):
    """(plan, catalog): the deployment file at `path`, or the command-line `options` compiled into
    the same spec (deployments/options.py), built for `model` (or the file's `model:`); `engine`
    (--engine) replaces the spec's serving engine."""
    from infersim.catalog.models import load_model
    from infersim.calibration.efficiency import load_calibration
    from infersim.deployments.options import spec_from_options
    from infersim.modes import load_spec
    from infersim.modes import build_plan
    catalog = _catalog(hardware, set_)
    spec = load_spec(path) if path is not None else spec_from_options(catalog, model=model, **(options or {}))
    if engine is not None:
        from infersim.catalog.engines import engine as engine_named
        engine_named(engine)  # an unknown name: one line listing the known ones
        spec = spec.model_copy(update={"engine": spec.engine.model_copy(update={"name": engine})})
    cal = load_calibration(calibration)
    arch = load_model(model) if model is not None else None
    return build_plan(spec, arch, catalog, cal, sizing=sizing if path is None else None), catalog


# ------------------------------------------------------------------------------------------------ shared

def _num(x: float) -> str:
    return f"{x:g}" if float(x) != int(x) else f"{int(x)}"


def _rate(x) -> str:
    return "—" if x is None else _g(x)


def _systems(plan) -> dict[str, str]:
    s = plan.spec
    return {"gpu": s.gpu.system if s.gpu else "?", "lpu": s.lpu.system if s.lpu else "?"}


def racks_power_line(plan, catalog, racks: dict, power_w: float) -> str:
    """'racks: 1 x vr-nvl72 (gpu) + 1 x lpx (lpu); power 370 kW from catalog power figures (...)'."""
    names = _systems(plan)
    parts, figures = [], []
    for kind, n in racks.items():
        name = names.get(kind, kind)
        parts.append(f"{_num(n)} x {name} ({kind})")
        try:
            q = catalog.resolve_system(name).power_w
        except InputError:
            q = None
        if q is not None and q.value is not None:
            figures.append(f"{name} {q.value / 1e3:g} kW {q.basis}")
        else:
            figures.append(f"{name}: no power figure (counted as 0)")
    return (f"racks: {' + '.join(parts) or 'none'}; power {power_w / 1e3:,.0f} kW from catalog power figures "
            f"({', '.join(figures)}; sources and ranges: `infersim systems --json`)")


# ------------------------------------------------------------------------------------------------ estimate

def print_estimate(d: dict, plan, catalog, console) -> None:
    """The human-readable report of `estimate_plan`'s dict."""
    say = lambda s: console.print(s, markup=False, highlight=False)  # noqa: E731
    console.print(f"[bold]{d['deployment']}[/] ({d['mode']}): {d['model']}; batch {d['batch']} per decode replica x "
                  f"({d['input_len']} in, {d['output_len']} out)", highlight=False)
    say(racks_power_line(plan, catalog, d["racks"], d["power_w"]))
    t = Table(title="estimate (steady state: every decode replica runs a full batch)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("TTFT", f"{_ms(d['ttft_s'])} ms")
    t.add_row("TPOT", f"{_ms(d['tpot_s'])} ms")
    t.add_row("tokens/s per user", _rate(d["tok_s_per_user"]))
    t.add_row("output tokens/s (deployment)", _rate(d["output_tok_s"]))
    t.add_row("output tokens/s per rack", _rate(d["tok_s_per_rack"]))
    t.add_row("output tokens/s per GPU", _rate(d["output_tok_s_per_gpu"]))
    if d.get("output_tok_s_per_decode_gpu") is not None:
        t.add_row("output tokens/s per decode GPU", _rate(d["output_tok_s_per_decode_gpu"]))
    t.add_row("output tokens/s per MW", _rate(d["tok_s_per_mw"]))
    t.add_row("max batch at this context (per replica)", f"{d['max_batch_at_context']:,}"
              if d.get("max_batch_at_context") is not None else "—")
    reps = f"{d['decode_replicas']}" + (f" (+ {d['prefill_replicas']} prefill)" if d.get("prefill_replicas") else "")
    t.add_row("decode replicas", reps)
    console.print(t)
    shares = d.get("time_shares") or {}
    if shares:
        say("where the time goes (shares of a decode step):")
        for kind, parts in shares.items():
            say(f"  {kind}: " + ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in parts.items()))
    if "afd" in d:
        _afd_lines(d, say)
    if "spec" in d:
        s = d["spec"]
        sp = plan.summary["spec"]
        say(f"speculative decoding cycle (k={sp['k']}, acceptance {fmt_acceptance(sp['acceptance'])}, draft "
            f"{sp['draft_model']} on {sp['draft_on']}): draft {_ms(s['draft_s'])} ms + link {_ms(s['link_s'])} ms + verify {_ms(s['verify_s'])} "
            f"ms = {_ms(s['cycle_s'])} ms; {s['expected_tokens_per_verify']:.3g} expected tokens per verification")
        if s.get("verify_bounds_s"):
            say(f"  verify step (AFD, k + 1 = {sp['k'] + 1} tokens per sequence): {s['verify_binding']} binds; bounds "
                + ", ".join(f"{k} {_ms(v)} ms" for k, v in s["verify_bounds_s"].items()))
    for n in d.get("notes", []):
        say(f"note: {n}")
    if plan.premium is not None and not any(k in d for k in ("premium", "classes")):
        say(f"note: the figures above are the {plan.spec.mode} path's alone; its racks and power include the premium "
            f"{plan.spec.routing.premium_path} path's, whose throughput is not added (simulate the file for both "
            "classes)")


def _afd_lines(d: dict, say, layers_shown: int = 2) -> None:
    """The AFD parts, the binding stage and the LPX : NVL72 ratio at which each stage stops (or
    starts) binding, and the per-layer pipeline: its first layers and a steady-state summary."""
    a, p = d["afd"], d["afd"]["parts_s"]
    say(f"AFD decode step, per micro-batch ({_num(p['m'])} in flight; link {a['link']}, {a['lpu_pools']} LPU "
        f"pool(s), {_g(a['attention_replicas_per_pool'])} attention replica(s) per pool):")
    say(f"  attention (GPU) {_ms(p['attention_s'])} ms + FFN (LPU) {_ms(p['ffn_s'])} ms (stages busy "
        f"{_ms(p['ffn_busy_s'])} ms, the rest pipeline and hop latency) + link {_ms(p['link_s'])} ms (bandwidth part "
        f"{_ms(p['link_bw_s'])} ms); step overhead {_ms(p['overhead_s'])} ms once per step")
    b = a["bottleneck"]
    say(f"  bottleneck: {b}, the binding stage (sets the {_ms(d['tpot_s'])} ms step): {BOTTLENECK_MEANS.get(b, b)}")
    say("  bounds: " + ", ".join(f"{k} {_ms(v)} ms" for k, v in a["bounds_s"].items()))
    if "binding" in a:
        r = a["binding"]
        parts = []
        for k in ("lpu", "link"):
            st = r["stages"][k]
            where = f" at {_g(st['ratio'])}" if st["status"] == "stops binding" else (
                f" (from {_g(st['ratio'])})" if st["status"] == "binds at any ratio" else "")
            parts.append(f"{'LPU pool' if k == 'lpu' else 'link'} {st['status']}{where}")
        say(f"  over LPX : NVL72 ratios (this file {_g(r['ratio'])}; one FFN pool needs {_g(r['min_ratio'])}): "
            + "; ".join(parts))
    q = a["pipeline"]
    say(f"AFD per-layer pipeline ({q['layers_n']} FFN layers x {q['micro_batches']} micro-batch(es)): steady-state step "
        f"{_ms(q['step_s'])} ms (closed form {_ms(max(q['bounds_s'].values()))} ms, all parts end to end "
        f"{_ms(q['strict_sum_s'])} ms); us from the step's first attention, (w) = waited for the resource:")
    us = lambda x: f"{x * 1e6:.1f}"  # noqa: E731
    for row in q["layers"][:layers_shown]:
        for j in range(q["micro_batches"]):
            cells = [f"{s['kind']} {us(s['start_s'])}-{us(s['end_s'])}" + (f" (w {us(s['queue_s'])})" if s["queue_s"] >= 5e-8
                     else "") for s in row if s["micro_batch"] == j]
            say(f"  layer {row[0]['layer']} mb {j}: " + ", ".join(cells))
    say("  per step: " + "; ".join(f"{k} busy {_ms(v)} ms, idle {_ms(q['idle_s'][k])} ms" for k, v in q["busy_s"].items())
        + "; micro-batches wait " + ", ".join(f"{_ms(v)} ms for the {k}" for k, v in q["queue_s"].items())
        + " (--json: every layer)")


# ------------------------------------------------------------------------------------------------ simulate

def _afd_spec_lines(s: dict, say, label: str = "") -> None:
    if s.get("afd"):
        a = s["afd"]
        say(f"{label}AFD: {a['attention_replicas']} attention replica(s) on GPUs, FFN in {a['lpu_pools']} LPU pool(s) "
            f"of {a['lpu_chips_per_pool']} chips, link {a['link']}, {a['micro_batches']} micro-batch(es)")
    if s.get("spec"):
        p = s["spec"]
        say(f"{label}speculative decoding: draft {p['draft_model']} on {p['draft_on']}, k={p['k']}, acceptance "
            f"{fmt_acceptance(p['acceptance'])}, {p['expected_tokens_per_verify']:.3g} expected tokens per verification")


def print_simulation(s: dict, plan, catalog, workload, console) -> None:
    """The report of `simulate_plan`'s summary: the usual tables, then racks, power, per-rack and
    per-MW throughput, AFD / spec details and, with SLO routing, a table per class."""
    from infersim.cli import simulation_view as cmd
    say = lambda x: console.print(x, markup=False, highlight=False)  # noqa: E731
    classes = s.get("classes")
    say(f"deployment {plan.spec.name} ({plan.spec.mode}), {plan.model.name}")
    if classes:
        first = next(iter(classes.values()))
        for label, c in classes.items():
            cmd.print_deployments(c, console, prefix=f"[{label}] ")
        cmd.print_workload(workload_dict(workload), console)
        cmd.print_engine(first["engine"], console)
        cmd.print_tables(s, console)
    else:
        cmd.print_summary(s, console)
    say(racks_power_line(plan, catalog, s["racks"], s["power_w"]))
    say(f"output tokens/s per rack {_rate(s.get('output_tok_s_per_rack'))}, per MW {_rate(s.get('output_tok_s_per_mw'))} "
        f"(whole deployment, {_rate(s.get('output_tok_s'))} output tok/s)")
    if s.get("output_tok_s_per_decode_gpu") is not None:
        say(f"output tokens/s per GPU {_rate(s['output_tok_s_per_gpu'])}, per decode GPU "
            f"{_rate(s['output_tok_s_per_decode_gpu'])} (how InferenceX and TensorRT-LLM report P/D throughput)")
    _afd_spec_lines(s, say)
    if not classes:
        return
    r = s["routing"]
    for label, c in classes.items():
        _afd_spec_lines(c, say, f"[{label}] ")
    t = Table(title=f"SLO classes ({r['premium_fraction']:.0%} premium on the {r['premium_path']} path, drawn with "
                    f"seed {r['seed']}; latency in ms)")
    for col in ("class", "path", "requests", "output tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99"):
        t.add_column(col, justify="left" if col in ("class", "path") else "right")
    paths = {"standard": plan.spec.mode, "premium": r["premium_path"]}
    for label, c in classes.items():
        t.add_row(label, paths.get(label, "?"), f"{c['requests_completed']:,} / {c['requests_injected']:,}",
                  _rate(c["output_tok_s"]), _ms(c["ttft_s"]["p50"]), _ms(c["ttft_s"]["p99"]), _ms(c["tpot_s"]["p50"]),
                  _ms(c["tpot_s"]["p99"]))
    console.print(t)


def workload_dict(workload) -> dict:
    """The summary's `workload` entry for the whole workload (routing splits it per class)."""
    from infersim.workload.synthetic import ClosedLoop
    closed = isinstance(workload, ClosedLoop)
    reqs = workload.requests if closed else workload
    return {"source": reqs.source, "requests": len(reqs), "closed_loop_concurrency": workload.concurrency if closed
            else None, "assumptions": list(reqs.assumptions)}
