"""`infersim simulate`: replay a trace or a synthetic workload through replicas of a deployment
(aggregated or prefill/decode disaggregated) and report latency percentiles, throughput, goodput
against an SLO, utilisation and KV-cache use. A thin layer over `infersim.serving.simulate`.

Determinism: stdout (table or --json) and the --out files hold simulated quantities only; the
wall-clock time of the run goes to stderr."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from infersim.capacity import check_request_memory
from infersim.cli.common import ENGINE_HELP
from infersim.cli.economics_view import PRICING_HELP, add_json, check_pricing
from infersim.cli.deployment_view import load_plan, print_simulation
from infersim.cli.simulation_view import print_costs, simulation_economics
from infersim.errors import InputError, shown
from infersim.inputs import BLOCK_TOKENS_RANGE, CV_RANGE, RATE_RANGE_PER_S, RATE_SCALE_RANGE, check_in_range, os_problem, path_kind
from infersim.mapping.engine import BLOCK_TOKENS as DEFAULT_BLOCK_TOKENS, MAX_BATCH as DEFAULT_MAX_BATCH
from infersim.mapping.engine import MAX_TOKENS_PER_STEP as DEFAULT_MAX_TOKENS_PER_STEP, ROUTER as DEFAULT_ROUTER

ARRIVALS = ("poisson", "gamma")
LENGTH_DISTS = ("fixed", "exponential", "uniform")
DEFAULT_INPUT_LEN = 1024
DEFAULT_OUTPUT_LEN = 256
DEFAULT_OPEN_REQUESTS = 1000
CLOSED_LOOP_REQUESTS_PER_USER = 10
DEFAULT_CV = 2.0


def _positive(label: str, v, *, integer: bool = True) -> None:
    if v is None:
        return
    if not (v >= 1 if integer else (np.isfinite(v) and v > 0)):
        raise InputError(f"{label} must be {'at least 1' if integer else 'a positive number'}, got {v}")


def _acceptance(text: str | None) -> float | list[float] | None:
    """--spec-acceptance: one number or a comma-separated list of them."""
    if text is None:
        return None
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        raise InputError(f"--spec-acceptance '{text}': give a number or numbers separated by commas, e.g. "
                         "0.9,0.7,0.5") from None
    return vals[0] if len(vals) == 1 else vals


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
    if rate_scale is not None:
        check_in_range("--rate-scale", rate_scale, RATE_SCALE_RANGE)
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
        if path_kind(trace, "--trace") == "dir":
            raise InputError(f"--trace '{shown(trace)}' is a directory; give a trace file (.csv or .jsonl) inside it")
        try:
            reqs = read_trace(trace, rate_scale=1.0 if rate_scale is None else rate_scale, max_requests=requests)
        except (OSError, UnicodeDecodeError) as e:
            why = os_problem(e) if isinstance(e, OSError) else "not UTF-8 text"
            raise InputError(f"--trace '{shown(trace)}': cannot read the trace ({why}); check the path and that it is "
                             "a text file") from None
        check_request_memory(len(reqs), f"--trace with {len(reqs):,} requests")
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
        check_in_range("--rate", rate, RATE_RANGE_PER_S, "requests/s")
        n = DEFAULT_OPEN_REQUESTS if requests is None else requests
        if requests is None:
            defaults.append(f"--requests defaulted to {n}")
    else:
        n = CLOSED_LOOP_REQUESTS_PER_USER * concurrency if requests is None else requests
        if requests is None:
            defaults.append(f"--requests defaulted to {CLOSED_LOOP_REQUESTS_PER_USER} x --concurrency = {n}")
    check_request_memory(n, f"--requests {n:,}" if requests is not None else f"the default of {n:,} requests")
    in_lengths, in_note = _lengths(inp, n, seed, dist, 1, "input")
    out_lengths, out_note = _lengths(outp, n, seed, dist, 2, "output")
    notes = [in_note, out_note] + ([f"lengths drawn from --seed {seed}"] if dist != "fixed" else []) + defaults
    if synthetic_open:
        kind = arrivals or "poisson"
        if kind == "poisson":
            reqs = poisson(float(rate), n, in_lengths, out_lengths, _derived_seed(seed, 0))
        else:
            _positive("--cv", cv, integer=False)
            check_in_range("--cv", cv, CV_RANGE)
            reqs = gamma_arrivals(float(rate), float(DEFAULT_CV if cv is None else cv), n, in_lengths, out_lengths,
                                  _derived_seed(seed, 0))
        # the generators record the derived seed; show the user's
        reqs = replace(reqs, source=reqs.source.rsplit(", seed=", 1)[0] + f", seed={seed})",
                       assumptions=(*reqs.assumptions, *notes))
        return reqs
    cl = closed_loop(concurrency, n, in_lengths, out_lengths, seed)
    return ClosedLoop(concurrency=cl.concurrency, requests=replace(cl.requests, assumptions=(*cl.requests.assumptions,
                                                                                             *notes)))


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
    dp_attention: Optional[bool] = typer.Option(None, "--dp-attention/--no-dp-attention",
                                                help="read --tp/--ep the engines' way: an instance of --tp GPUs, "
                                                     "attention data parallel over them (or tensor parallel), "
                                                     "--ep the engine's expert-parallel size dividing --tp; "
                                                     "default: infersim's tp x ep (README)"),
    replicas: Optional[int] = typer.Option(None, help="independent model copies serving the workload"),
    precision: Optional[str] = typer.Option(None, help="bf16, fp16, fp8, int8, fp4, mixed (default as in estimate)"),
    kv_precision: Optional[str] = typer.Option(None, help="KV-cache format (default: fp8 with 8-bit weights)"),
    hardware: Optional[list[Path]] = typer.Option(None, "--hardware", help="extra hardware YAML"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override NAME.FIELD=VALUE"),
    calibration: Optional[str] = typer.Option(None, help="fit file, or 'none' for defaults"),
    # workload
    trace: Optional[Path] = typer.Option(None, help="request trace (.csv Azure/BurstGPT, .jsonl Mooncake/...); a bare "
                                         "name with no such local file means a shipped trace, e.g. "
                                         "AzureLLMInferenceTrace_conv.csv (list: infersim/datasets/README.md)"),
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
    decode_ep: Optional[int] = typer.Option(None, help="P/D: ep of a decode replica (default --ep)"),
    prefill_tp: Optional[int] = typer.Option(None, help="P/D: tp of a prefill replica (default --tp)"),
    prefill_ep: Optional[int] = typer.Option(None, help="P/D: ep of a prefill replica (default --ep)"),
    # speculative decoding on the decoding GPUs
    spec: Optional[str] = typer.Option(None, "--spec", help="speculative decoding drafted on the decoding GPUs: mtp "
                                       "(the model's MTP head), eagle (an EAGLE head) or draft (--draft-model)"),
    spec_k: Optional[int] = typer.Option(None, help="drafted tokens per verification (default: the published "
                                         "figures' k, or 4 for a draft model)"),
    spec_acceptance: Optional[str] = typer.Option(None, help="acceptance: one number, or one per drafted position "
                                                  "(P(token i accepted | 1..i-1 were)) as a,b,c; default "
                                                  "catalog/data/speculative.yaml"),
    draft_model: Optional[str] = typer.Option(None, help="--spec draft: the draft model"),
    # engine (None = not given: the default below, or the deployment file's `engine:` value)
    engine_name: Optional[str] = typer.Option(None, "--engine", help=ENGINE_HELP),
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
    premium_fraction: Optional[float] = typer.Option(None, help="SLO classes: mark this share of requests premium "
                                                     "(priority 0, the rest 1; drawn with --seed) for --queue-order "
                                                     "priority, --preemption lowest-priority, --router slo-class"),
    slo: Optional[str] = typer.Option(None, help="latency targets, e.g. ttft_p99=2s,tpot_p99=100ms"),
    pricing: str = typer.Option("capex", "--pricing", help=PRICING_HELP),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="write requests.parquet and summary.json here"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the results an earlier run left in --out"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON instead of tables"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or wall-clock line on stderr"),
):
    """Simulate serving a trace or synthetic workload: latency percentiles, throughput, goodput, KV use."""
    from infersim.cli.common import err, missing_option, out, refuse_file_options
    from infersim.deployments.run import engine_of, simulate_plan
    from infersim.modes._shared import Sizing
    from infersim.serving.config import ROUTERS
    from infersim.results import check_out_dir
    from infersim.serving.metrics import RESULT_FILES, parse_slo, write_results
    from infersim.workload.synthetic import ClosedLoop

    if deployment is not None:
        refuse_file_options({"--system": system, "--tp": tp, "--pp": pp, "--ep": ep, "--chips": chips,
                             "--replicas": replicas, "--precision": precision, "--kv-precision": kv_precision,
                             "--prefill-replicas": prefill_replicas, "--decode-replicas": decode_replicas,
                             "--decode-system": decode_system, "--decode-tp": decode_tp, "--decode-ep": decode_ep,
                             "--prefill-tp": prefill_tp, "--prefill-ep": prefill_ep, "--spec": spec,
                             "--spec-k": spec_k, "--spec-acceptance": spec_acceptance, "--draft-model": draft_model,
                             "--dp-attention": dp_attention})
    else:
        for name, v in (("--model", model), ("--system", system)):
            if v is None:
                raise missing_option(name)
    slo_spec = parse_slo(slo)
    check_pricing(pricing)
    if router is not None and router not in ROUTERS:
        raise InputError(f"--router '{router}' is unknown; choose one of {', '.join(ROUTERS)}")
    for label, v in (("--max-batch", max_batch), ("--max-tokens-per-step", max_tokens_per_step),
                     ("--chunk-tokens", chunk_tokens), ("--block-tokens", block_tokens), ("--decode-tp", decode_tp),
                     ("--pp", pp), ("--ep", ep)):
        _positive(label, v)
    if block_tokens is not None:
        check_in_range("--block-tokens", block_tokens, BLOCK_TOKENS_RANGE, "tokens")
    if out_dir is not None:  # checked (parent created, writability probed) before the long run
        check_out_dir(out_dir, RESULT_FILES, overwrite=overwrite)
    workload = _workload(trace, rate_scale, requests, arrivals, rate, cv, input_len, output_len, length_dist, seed,
                         concurrency)
    if premium_fraction is not None:
        from infersim.workload.synthetic import with_premium_share
        if isinstance(workload, ClosedLoop):
            workload = replace(workload, requests=with_premium_share(workload.requests, premium_fraction, seed))
        else:
            workload = with_premium_share(workload, premium_fraction, seed)
    reqs = workload.requests if isinstance(workload, ClosedLoop) else workload
    # a bare LPU / wafer chip without --chips: the workload decides how many chips its KV cache needs
    seqs = min(max_batch or DEFAULT_MAX_BATCH, len(reqs), workload.concurrency if isinstance(workload, ClosedLoop)
               else len(reqs))
    sizing = Sizing(int(np.max(reqs.input_tokens + reqs.output_tokens)), seqs, auto=False,
                    how="pass --chips (chips in all; --replicas pipelines)")
    options = dict(system=system, chips=chips, tp=tp, pp=pp, ep=ep, replicas=replicas, precision=precision,
                   kv_precision=kv_precision, prefill_replicas=prefill_replicas, decode_replicas=decode_replicas,
                   decode_system=decode_system, decode_tp=decode_tp, decode_ep=decode_ep, prefill_tp=prefill_tp,
                   prefill_ep=prefill_ep, spec_method=spec, spec_k=spec_k, draft_model=draft_model,
                   spec_acceptance=_acceptance(spec_acceptance), dp_attention=dp_attention)
    plan, catalog = load_plan(deployment, model, hardware, set_, calibration, options=options, sizing=sizing,
                              engine=engine_name)
    base, router = engine_of(plan), router or plan.spec.engine.router
    given = {"max_batch": max_batch, "max_tokens_per_step": max_tokens_per_step, "chunk_tokens": chunk_tokens,
             "block_tokens": block_tokens, "prefix_caching": prefix_cache, "admission": admission,
             "queue_order": queue_order, "preemption": preemption}
    engine = replace(base, **{k: v for k, v in given.items() if v is not None})
    total = len(reqs)

    def go(progress=None):
        return simulate_plan(plan, workload, engine=engine, router=router, slo=slo_spec, progress=progress)

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

    econ, why = simulation_economics(plan, res.summary, catalog, set_, pricing)
    add_json(res.summary, econ, why)
    if out_dir is not None:  # before any printing, so the results survive a failing terminal or pipe
        try:
            pq_path, js_path = write_results(out_dir, res.records, res.summary)
        except OSError as e:
            raise InputError(f"--out '{shown(out_dir)}': cannot write the results ({os_problem(e)}); "
                             "pick a writable directory") from None
    if not quiet:
        s = res.summary
        events = s["events"] if "events" in s else sum(c["events"] for c in s.get("classes", {}).values())
        err.print(f"simulated {total:,} requests ({events:,} events) in {wall:.2f} s wall-clock",
                  markup=False, highlight=False)
    if as_json:
        import sys
        from infersim.results import json_text
        sys.stdout.write(json_text(res.summary, indent=2, sort_keys=True))
        return
    print_simulation(res.summary, plan, catalog, workload, out)
    print_costs(econ, why, out)
    if out_dir is not None:
        out.print(f"wrote {pq_path} and {js_path}", markup=False, highlight=False)
