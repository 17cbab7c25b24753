"""`infersim simulate`: replay a trace or a synthetic workload through replicas of a deployment
(aggregated or prefill/decode disaggregated) and report latency percentiles, throughput, goodput
against an SLO, utilisation and KV-cache use. A thin layer over `infersim.serving.simulate`.

Determinism: stdout (table or --json) and the --out files hold simulated quantities only; the
wall-clock time of the run goes to stderr."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from infersim.errors import InputError

ARRIVALS = ("poisson", "gamma")
LENGTH_DISTS = ("fixed", "exponential", "uniform")
DEFAULT_INPUT_LEN = 1024
DEFAULT_OUTPUT_LEN = 256
DEFAULT_OPEN_REQUESTS = 1000
CLOSED_LOOP_REQUESTS_PER_USER = 10
DEFAULT_CV = 2.0
DEFAULT_ROUTER = "least-outstanding"
# engine defaults for the help text (EngineConfig's own defaults, vLLM v1's)
DEFAULT_MAX_BATCH, DEFAULT_MAX_TOKENS_PER_STEP, DEFAULT_BLOCK_TOKENS = 256, 8192, 16


def _positive(label: str, v, *, integer: bool = True) -> None:
    if v is None:
        return
    if not (v >= 1 if integer else (np.isfinite(v) and v > 0)):
        raise InputError(f"{label} must be {'at least 1' if integer else 'a positive number'}, got {v}")


def _derived_seed(seed: int, stream: int) -> int:
    """An independent seed per random stream (arrivals, input lengths, output lengths) from --seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def _lengths(mean: int, n: int, seed: int, dist: str, stream: int, what: str):
    from infersim.workload.synthetic import sampled_lengths
    lengths = sampled_lengths(mean, n, _derived_seed(seed, stream), dist)
    note = {"fixed": f"{what} length fixed at {mean} tokens",
            "exponential": f"{what} lengths exponential (geometric on 1, 2, ...), mean {mean} tokens",
            "uniform": f"{what} lengths uniform on [1, {2 * mean - 1}], mean {mean} tokens"}[dist]
    return lengths, note


def _workload(trace, rate_scale, requests, arrivals, rate, cv, input_len, output_len, length_dist, seed, concurrency):
    """Exactly one source: a trace (open loop, or closed loop with --concurrency), open-loop synthetic
    arrivals (--arrivals/--rate), or a synthetic closed loop (--concurrency)."""
    from infersim.workload.synthetic import ClosedLoop, closed_loop, gamma_arrivals, poisson
    from infersim.workload.traces import read_trace
    synthetic_open = arrivals is not None or rate is not None
    sources = [name for name, given in (("--trace", trace is not None), ("--arrivals/--rate", synthetic_open),
                                        ("--concurrency", concurrency is not None and trace is None)) if given]
    if len(sources) != 1:
        what = "no workload" if not sources else f"{' and '.join(sources)} together"
        raise InputError(f"{what}: give exactly one workload source: --trace FILE (add --concurrency N to replay it "
                         "closed-loop), --arrivals poisson|gamma --rate R, or --concurrency N")
    _positive("--requests", requests)
    _positive("--concurrency", concurrency)
    _positive("--rate-scale", rate_scale, integer=False)
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    if arrivals is not None and arrivals not in ARRIVALS:
        raise InputError(f"--arrivals '{arrivals}' is unknown; choose one of {', '.join(ARRIVALS)}")
    if length_dist is not None and length_dist not in LENGTH_DISTS:
        raise InputError(f"--length-dist '{length_dist}' is unknown; choose one of {', '.join(LENGTH_DISTS)}")
    if cv is not None and arrivals != "gamma":
        raise InputError("--cv sets the burstiness of gamma arrivals; add --arrivals gamma or drop --cv")

    if trace is not None:
        ignored = [o for o, v in (("--input-len", input_len), ("--output-len", output_len),
                                  ("--length-dist", length_dist)) if v is not None]
        if ignored:
            raise InputError(f"{', '.join(ignored)} cannot be combined with --trace (the trace gives each request's "
                             "lengths); drop them")
        if concurrency is not None and rate_scale is not None:
            raise InputError("--rate-scale has no effect on a closed-loop replay (--concurrency ignores arrival "
                             "times); drop one of them")
        try:
            reqs = read_trace(trace, rate_scale=1.0 if rate_scale is None else rate_scale, max_requests=requests)
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{trace}: cannot read the trace ({e}); check the path and that it is a text file") from None
        if concurrency is None:
            return reqs
        reqs = replace(reqs, assumptions=(*reqs.assumptions,
                                          f"closed loop: {concurrency} user(s), think time 0; the trace's requests "
                                          "are sent in arrival order and its arrival times are ignored"))
        return ClosedLoop(concurrency=concurrency, requests=reqs)

    if rate_scale is not None:
        raise InputError("--rate-scale compresses a trace's arrival times; use it with --trace (or change --rate)")
    _positive("--input-len", input_len)
    _positive("--output-len", output_len)
    dist = length_dist or "fixed"
    inp = DEFAULT_INPUT_LEN if input_len is None else input_len
    outp = DEFAULT_OUTPUT_LEN if output_len is None else output_len
    defaults = [f"{o} defaulted to {v}" for o, given, v in (("--input-len", input_len, inp),
                                                           ("--output-len", output_len, outp)) if given is None]
    if synthetic_open:
        if rate is None:
            raise InputError(f"--arrivals {arrivals} needs --rate (requests per second)")
        _positive("--rate", rate, integer=False)
        n = DEFAULT_OPEN_REQUESTS if requests is None else requests
        if requests is None:
            defaults.append(f"--requests defaulted to {n}")
    else:
        n = CLOSED_LOOP_REQUESTS_PER_USER * concurrency if requests is None else requests
        if requests is None:
            defaults.append(f"--requests defaulted to {CLOSED_LOOP_REQUESTS_PER_USER} x --concurrency = {n}")
    in_lengths, in_note = _lengths(inp, n, seed, dist, 1, "input")
    out_lengths, out_note = _lengths(outp, n, seed, dist, 2, "output")
    notes = [in_note, out_note] + ([f"lengths drawn from --seed {seed}"] if dist != "fixed" else []) + defaults
    if synthetic_open:
        kind = arrivals or "poisson"
        if kind == "poisson":
            reqs = poisson(float(rate), n, in_lengths, out_lengths, _derived_seed(seed, 0))
        else:
            _positive("--cv", cv, integer=False)
            reqs = gamma_arrivals(float(rate), float(DEFAULT_CV if cv is None else cv), n, in_lengths, out_lengths,
                                  _derived_seed(seed, 0))
        # the generators record the derived seed; show the user's
        reqs = replace(reqs, source=reqs.source.rsplit(", seed=", 1)[0] + f", seed={seed})",
                       assumptions=(*reqs.assumptions, *notes))
        return reqs
    cl = closed_loop(concurrency, n, in_lengths, out_lengths, seed)
    return ClosedLoop(concurrency=cl.concurrency, requests=replace(cl.requests, assumptions=(*cl.requests.assumptions,
                                                                                             *notes)))


def _deployments(model, system, chips, tp, pp, ep, replicas, precision, kv_precision, prefill_replicas,
                 decode_replicas, decode_system, decode_tp, hardware, set_, calibration):
    from infersim.catalog.models import load_model
    from infersim.cli.main import _catalog
    from infersim.calibration.efficiency import load_calibration
    from infersim.mapping.deployment import build_deployment
    arch = load_model(model)
    catalog = _catalog(hardware, set_)
    cal = load_calibration(calibration)
    kw = dict(pp=pp, ep=ep, precision=precision, kv_precision=kv_precision, catalog=catalog, calibration=cal)
    disagg = prefill_replicas is not None or decode_replicas is not None
    if not disagg:
        extra = [o for o, v in (("--decode-system", decode_system), ("--decode-tp", decode_tp)) if v is not None]
        if extra:
            raise InputError(f"{', '.join(extra)}: for a disaggregated deployment only; add --prefill-replicas N "
                             "--decode-replicas M or drop them")
        return build_deployment(arch, system, chips=chips, tp=tp, replicas=replicas, **kw), None
    if prefill_replicas is None or decode_replicas is None:
        raise InputError("a disaggregated deployment needs both --prefill-replicas and --decode-replicas")
    clash = [o for o, v in (("--replicas", replicas), ("--chips", chips)) if v is not None]
    if clash:
        raise InputError(f"{' and '.join(clash)} cannot be combined with --prefill-replicas/--decode-replicas "
                         "(each pool's size is its replicas x tp x pp x ep); drop them")
    _positive("--prefill-replicas", prefill_replicas)
    _positive("--decode-replicas", decode_replicas)
    pre = build_deployment(arch, system, tp=tp, replicas=prefill_replicas, **kw)
    dec = build_deployment(arch, decode_system or system, tp=tp if decode_tp is None else decode_tp,
                           replicas=decode_replicas, **kw)
    return pre, dec


def _check_sram_sizing(dep, system: str, chips, workload, engine, disagg: bool) -> None:
    """A bare LPU / wafer chip without --chips gets just enough chips for the weights, which leaves no
    SRAM for a KV cache: ask for a chip count instead of guessing one (estimate sizes for its batch)."""
    from infersim.costmodel.memory import min_chips_for_context
    from infersim.workload.synthetic import ClosedLoop
    named = dep.system.name == system.lower() or system.lower() in (a.lower() for a in dep.system.aliases)
    if not dep.dataflow or chips is not None or named:
        return
    reqs = workload.requests if isinstance(workload, ClosedLoop) else workload
    longest = int(np.max(reqs.input_tokens + reqs.output_tokens))
    seqs = min(engine.max_batch, len(reqs), workload.concurrency if isinstance(workload, ClosedLoop) else len(reqs))
    need = min_chips_for_context(dep, longest, seqs)
    how = ("use a named system (`infersim systems`) for each pool" if disagg else
           f"pass --chips (e.g. --chips {need * dep.par.replicas} for {dep.par.replicas} replica(s))")
    raise InputError(f"{dep.chip.name} keeps weights and KV cache in SRAM: {dep.chips_per_replica} chips per replica "
                     f"hold the weights only, {need} hold them plus the KV cache of {seqs} sequence(s) of the longest "
                     f"request ({longest:,} tokens); {how}")


def _ms(x) -> str:
    """Seconds as milliseconds: 3 significant digits below 1 ms, then 2 or 1 decimals."""
    if x is None:
        return "—"
    v = x * 1e3
    return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}" if abs(v) < 10 else f"{v:,.1f}"


def _pct(x) -> str:
    return "—" if x is None else f"{x:.1%}"


def _deployment_line(role: str, d: dict, blocks: int, block_tokens: int) -> str:
    p = d["parallel"]
    return (f"{role}: {d['model']} on {d['system']}: {d['replicas']} replica(s) x {d['chips_per_replica']} "
            f"{d['chip']} (tp={p['tp']} pp={p['pp']} ep={p['ep']}), {d['precision']}; KV cache {blocks:,} blocks "
            f"x {block_tokens} tokens per replica; calibration: {d['calibration']}")


def print_deployments(s: dict, console, prefix: str = "") -> None:
    eng = s["engine"]
    for role, d in s["deployment"].items():
        console.print(prefix + _deployment_line(role, d, s["kv_blocks_per_replica"][role], eng["block_tokens"]),
                      markup=False, highlight=False)


def print_workload(w: dict, console) -> None:
    loop = f", closed loop with {w['closed_loop_concurrency']} user(s)" if w["closed_loop_concurrency"] else ", open loop"
    console.print(f"workload: {w['source']}; {w['requests']:,} requests{loop}", markup=False, highlight=False)
    for a in w["assumptions"]:
        console.print(f"  assumption: {a}", markup=False, highlight=False)


def print_engine(eng: dict, console) -> None:
    admission = f", admission {eng['admission']}" if "admission" in eng else ""
    console.print(f"engine: max batch {eng['max_batch']}, {eng['max_tokens_per_step']:,} tokens per step, prefill "
                  f"chunk {eng['chunk_tokens']:,}, KV block {eng['block_tokens']} tokens, prefix cache "
                  f"{'on' if eng['prefix_caching'] else 'off'}{admission}, router {eng['router']}",
                  markup=False, highlight=False)


def print_tables(s: dict, console) -> None:
    """The summary, latency and SLO tables; rows whose figures the summary lacks (a merged summary
    of SLO classes has no utilisation or KV figures of its own) are left out."""
    from infersim.cli.main import _g
    t = Table(title="serving summary (simulated time)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    done, inj = s["requests_completed"], s["requests_injected"]
    t.add_row("requests (completed / injected)", f"{done:,} / {inj:,}")
    if s.get("requests_queued") or s.get("requests_running"):
        t.add_row("requests left queued / running", f"{s['requests_queued']:,} / {s['requests_running']:,}")
    t.add_row("duration", f"{_g(s['duration_s'])} s")
    t.add_row("throughput: requests", f"{_g(s['request_s'])} req/s")
    t.add_row("throughput: output tokens", f"{_g(s['output_tok_s'])} tok/s")
    t.add_row("throughput: input tokens", f"{_g(s['input_tok_s'])} tok/s")
    slo_label = "goodput (meets every SLO target)" if s["slo"] else "goodput (completed; no --slo)"
    t.add_row(slo_label, f"{_pct(s['goodput'])} of requests, {_g(s['goodput_req_s'])} req/s")
    if "utilisation" in s:
        t.add_row("utilisation (busy share, mean over replicas)", _pct(s["utilisation"]))
    if "kv_occupancy_mean" in s:
        t.add_row("KV-cache occupancy mean / peak", f"{_pct(s['kv_occupancy_mean'])} / {_pct(s['kv_occupancy_peak'])}")
    if "preemptions" in s:
        t.add_row("preemptions", f"{s['preemptions']:,}")
    if "prefix_cache_hit_rate" in s:
        t.add_row("prefix-cache hit rate (prompt tokens)", _pct(s["prefix_cache_hit_rate"]))
    if "decode" in s.get("deployment", {}):
        t.add_row("KV transfers (prefill -> decode)", f"{s['kv_transfers']:,} ({_g(s['kv_transfer_link_busy_s'])} s "
                  "link busy)")
    console.print(t)

    lat = Table(title="latency (ms, completed requests; ITL from a 0.1% histogram)")
    for c in ("metric", "p50", "p90", "p99", "mean"):
        lat.add_column(c, justify="right" if c != "metric" else "left")
    for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("ITL", "itl_s"), ("E2E", "e2e_s")):
        lat.add_row(name, *(_ms(s[key][p]) for p in ("p50", "p90", "p99", "mean")))
    console.print(lat)

    if s["slo"]:
        st = Table(title="SLO")
        for c in ("target", "value (ms)", "limit (ms)", "status"):
            st.add_column(c, justify="right" if "ms" in c else "left")
        for key, v in s["slo"].items():
            st.add_row(key, _ms(v["value_s"]), _ms(v["target_s"]), "met" if v["met"] else "MISSED")
        console.print(st)


def print_summary(s: dict, console) -> None:
    """The human-readable report of a simulation summary."""
    print_deployments(s, console)
    print_workload(s["workload"], console)
    print_engine(s["engine"], console)
    print_tables(s, console)


def simulate(
    model: Optional[str] = typer.Option(None, help="catalog name, HF repo id, or path to a config.json (with "
                                        "--deployment: default the file's `model:`)"),
    system: Optional[str] = typer.Option(None, help="chip (h100-sxm, ...) or system (gb200-nvl72, ...); required "
                                         "unless --deployment is given"),
    deployment: Optional[Path] = typer.Option(None, "--deployment", help="deployment YAML (examples/deployments/): "
                                              "GPU, LPU, AFD or speculative-decoding racks; replaces --system and the "
                                              "layout options"),
    chips: Optional[int] = typer.Option(None, help="chips in total (default: the system's, or tp*pp*ep*replicas)"),
    tp: Optional[int] = typer.Option(None), pp: Optional[int] = typer.Option(None, help="default 1"),
    ep: Optional[int] = typer.Option(None, help="default 1"),
    replicas: Optional[int] = typer.Option(None, help="independent model copies serving the workload"),
    precision: Optional[str] = typer.Option(None, help="bf16, fp16, fp8, int8, fp4, mixed (default as in estimate)"),
    kv_precision: Optional[str] = typer.Option(None, help="KV-cache format (default: fp8 with 8-bit weights)"),
    hardware: Optional[list[Path]] = typer.Option(None, "--hardware", help="extra hardware YAML"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override NAME.FIELD=VALUE"),
    calibration: Optional[str] = typer.Option(None, help="fit file, or 'none' for defaults"),
    # workload
    trace: Optional[Path] = typer.Option(None, help="request trace (.csv Azure/BurstGPT, .jsonl Mooncake/...)"),
    rate_scale: Optional[float] = typer.Option(None, help="trace only: divide arrival times by this (>1 = faster)"),
    requests: Optional[int] = typer.Option(None, help="trace: keep the first N; synthetic: N requests (default 1000; "
                                           "closed loop 10 x --concurrency)"),
    arrivals: Optional[str] = typer.Option(None, help="synthetic open loop: poisson or gamma (default poisson)"),
    rate: Optional[float] = typer.Option(None, help="synthetic open loop: requests per second"),
    cv: Optional[float] = typer.Option(None, help="gamma arrivals: coefficient of variation (default 2; 1 = Poisson)"),
    input_len: Optional[int] = typer.Option(None, help="synthetic: (mean) prompt tokens (default 1024)"),
    output_len: Optional[int] = typer.Option(None, help="synthetic: (mean) generated tokens (default 256)"),
    length_dist: Optional[str] = typer.Option(None, help="synthetic lengths: fixed, exponential, uniform (default fixed)"),
    seed: int = typer.Option(0, help="seed of the synthetic arrivals and lengths"),
    concurrency: Optional[int] = typer.Option(None, help="closed loop: N users, think time 0 (with --trace: replay its "
                                              "requests in order)"),
    # P/D disaggregation
    prefill_replicas: Optional[int] = typer.Option(None, help="P/D: replicas in the prefill pool"),
    decode_replicas: Optional[int] = typer.Option(None, help="P/D: replicas in the decode pool"),
    decode_system: Optional[str] = typer.Option(None, help="P/D: chip or system of the decode pool (default --system)"),
    decode_tp: Optional[int] = typer.Option(None, help="P/D: tp of a decode replica (default --tp)"),
    # engine (None = not given: the default below, or the deployment file's `engine:` value)
    max_batch: Optional[int] = typer.Option(None, help=f"sequences per step (vLLM max_num_seqs; default "
                                            f"{DEFAULT_MAX_BATCH})"),
    max_tokens_per_step: Optional[int] = typer.Option(None, help="token budget per step (vLLM max_num_batched_tokens; "
                                                      f"default {DEFAULT_MAX_TOKENS_PER_STEP})"),
    chunk_tokens: Optional[int] = typer.Option(None, help="largest prefill chunk of one request (default: the budget)"),
    block_tokens: Optional[int] = typer.Option(None, help=f"KV-cache block size in tokens (default "
                                               f"{DEFAULT_BLOCK_TOKENS})"),
    prefix_cache: Optional[bool] = typer.Option(None, "--prefix-cache/--no-prefix-cache",
                                                help="prefix caching (default on)"),
    router: Optional[str] = typer.Option(None, help=f"least-outstanding, round-robin, prefix-affinity or slo-class "
                                         f"(premium = most urgent priority, on a reserved share of replicas; default "
                                         f"{DEFAULT_ROUTER})"),
    admission: Optional[str] = typer.Option(None, help="eager (vLLM: admit on the first chunk's blocks, preempt when "
                                            "full) or reserve (TensorRT-LLM: reserve the whole context, never "
                                            "preempt); default eager"),
    queue_order: Optional[str] = typer.Option(None, help="order waiting requests are admitted in: fcfs, priority "
                                              "(lowest priority number first) or shortest-prompt; default fcfs"),
    preemption: Optional[str] = typer.Option(None, help="running request preempted when KV blocks run out: newest "
                                             "(vLLM), fewest-tokens (least recompute) or lowest-priority; default "
                                             "newest"),
    slo: Optional[str] = typer.Option(None, help="latency targets, e.g. ttft_p99=2s,tpot_p99=100ms"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="write requests.parquet and summary.json here"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON instead of tables"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or wall-clock line on stderr"),
):
    """Simulate serving a trace or synthetic workload: latency percentiles, throughput, goodput, KV use."""
    from infersim.cli.deployment_view import missing_option, refuse_file_options
    from infersim.cli.main import err, out
    from infersim.serving.config import ROUTERS, EngineConfig
    from infersim.serving.metrics import parse_slo, write_results
    from infersim.serving.simulate import simulate as run
    from infersim.workload.synthetic import ClosedLoop

    if deployment is not None:
        refuse_file_options({"--system": system, "--tp": tp, "--pp": pp, "--ep": ep, "--chips": chips,
                             "--replicas": replicas, "--precision": precision, "--kv-precision": kv_precision,
                             "--prefill-replicas": prefill_replicas, "--decode-replicas": decode_replicas,
                             "--decode-system": decode_system, "--decode-tp": decode_tp})
    else:
        for name, v in (("--model", model), ("--system", system)):
            if v is None:
                raise missing_option(name)
    slo_spec = parse_slo(slo)
    if router is not None and router not in ROUTERS:
        raise InputError(f"--router '{router}' is unknown; choose one of {', '.join(ROUTERS)}")
    for label, v in (("--max-batch", max_batch), ("--max-tokens-per-step", max_tokens_per_step),
                     ("--chunk-tokens", chunk_tokens), ("--block-tokens", block_tokens), ("--decode-tp", decode_tp),
                     ("--pp", pp), ("--ep", ep)):
        _positive(label, v)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a directory (it is created if missing)")
    plan = catalog = None
    if deployment is not None:
        from infersim.cli.deployment_view import load_plan
        from infersim.deployments.run import engine_of
        plan, catalog = load_plan(deployment, model, hardware, set_, calibration)
        base, router = engine_of(plan), router or plan.spec.engine.router
    else:
        base, router = EngineConfig(), router or DEFAULT_ROUTER
    given = {"max_batch": max_batch, "max_tokens_per_step": max_tokens_per_step, "chunk_tokens": chunk_tokens,
             "block_tokens": block_tokens, "prefix_caching": prefix_cache, "admission": admission,
             "queue_order": queue_order, "preemption": preemption}
    engine = replace(base, **{k: v for k, v in given.items() if v is not None})
    workload = _workload(trace, rate_scale, requests, arrivals, rate, cv, input_len, output_len, length_dist, seed,
                         concurrency)
    if plan is None:
        dep, decode = _deployments(model, system, chips, tp, 1 if pp is None else pp, 1 if ep is None else ep,
                                   replicas, precision, kv_precision, prefill_replicas, decode_replicas, decode_system,
                                   decode_tp, hardware, set_, calibration)
        _check_sram_sizing(dep, system, chips, workload, engine, decode is not None)
        if decode is not None:
            _check_sram_sizing(decode, decode_system or system, None, workload, engine, True)
    total = len(workload.requests if isinstance(workload, ClosedLoop) else workload)

    def go(progress=None):
        if plan is not None:
            from infersim.deployments.run import simulate_plan
            return simulate_plan(plan, workload, engine=engine, router=router, slo=slo_spec, progress=progress)
        return run(workload, dep, decode=decode, engine=engine, router=router, slo=slo_spec, progress=progress)

    show = not quiet and err.is_terminal
    started = time.perf_counter()
    if show:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("simulate", total=total)
            seen = {"base": 0, "last": 0}

            def progress(done):  # SLO classes run one after another, each counting from 0
                if done < seen["last"]:
                    seen["base"] += seen["last"]
                seen["last"] = done
                bar.update(task, completed=min(total, seen["base"] + done))
            res = go(progress)
            bar.update(task, completed=total)
    else:
        res = go()
    wall = time.perf_counter() - started

    if out_dir is not None:  # before any printing, so the results survive a failing terminal or pipe
        try:
            pq_path, js_path = write_results(out_dir, res.records, res.summary)
        except OSError as e:
            raise InputError(f"--out {out_dir}: cannot write the results ({e.strerror or e}); "
                             "pick a writable directory") from None
    if not quiet:
        s = res.summary
        events = s["events"] if "events" in s else sum(c["events"] for c in s.get("classes", {}).values())
        err.print(f"simulated {total:,} requests ({events:,} events) in {wall:.2f} s wall-clock",
                  markup=False, highlight=False)
    if as_json:
        import sys
        sys.stdout.write(json.dumps(res.summary, indent=2, sort_keys=True, allow_nan=False) + "\n")
        return
    if plan is not None:
        from infersim.cli.deployment_view import print_simulation
        print_simulation(res.summary, plan, catalog, workload, out)
    else:
        print_summary(res.summary, out)
    if out_dir is not None:
        out.print(f"wrote {pq_path} and {js_path}", markup=False, highlight=False)
