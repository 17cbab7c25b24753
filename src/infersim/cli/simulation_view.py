"""Printing a simulation summary: deployments, workload, engine and the latency / SLO tables."""
from __future__ import annotations

from rich.table import Table

from infersim.cli.common import fmt_g as _g, fmt_ms as _ms, fmt_pct as _pct


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
    policies = "".join(f", {label} {eng[key]}" for key, label in (("admission", "admission"),
                                                                   ("queue_order", "queue order"),
                                                                   ("preemption", "preemption victim")) if key in eng)
    console.print(f"engine: max batch {eng['max_batch']}, {eng['max_tokens_per_step']:,} tokens per step, prefill "
                  f"chunk {eng['chunk_tokens']:,}, KV block {eng['block_tokens']} tokens, prefix cache "
                  f"{'on' if eng['prefix_caching'] else 'off'}{policies}, router {eng['router']}",
                  markup=False, highlight=False)


def print_tables(s: dict, console) -> None:
    """The summary, latency and SLO tables; rows whose figures the summary lacks (a merged summary
    of SLO classes has no utilisation or KV figures of its own) are left out."""
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
            st.add_row(key + (" (as TPOT)" if "target_tok_s" in v else ""), _ms(v["value_s"]), _ms(v["target_s"]),
                       "met" if v["met"] else "MISSED")
        console.print(st)


def print_summary(s: dict, console) -> None:
    """The human-readable report of a simulation summary."""
    print_deployments(s, console)
    print_workload(s["workload"], console)
    print_engine(s["engine"], console)
    print_tables(s, console)


# ------------------------------------------------------------------------------------------------ cost

UNSPLIT_NOTE = ("the simulator does not split an aggregated replica's time between prefill and decode: all the "
                "hardware is charged to output tokens (no cost per input token)")


def simulation_economics(plan, summary: dict, catalog, set_, pricing: str):
    """(economics, why-not-priced) of a simulated run (economics_view.economics_of at the run's
    throughput and utilisation: economics.throughput_of_simulation). Where the simulator cannot
    split the hardware between prefill and decode (aggregated replicas) the input tokens carry no
    cost of their own and a note says so."""
    from infersim.cli.economics_view import economics_of
    from infersim.economics import splits_prefill, throughput_of_simulation
    if not summary.get("output_tok_s"):
        return None, "no output tokens were produced, so there is nothing to charge them"
    econ, why = economics_of(plan, throughput_of_simulation(summary, plan), catalog, set_, pricing)
    if econ is not None and not splits_prefill(plan):
        econ.cost_per_mtok_input_usd = None
        econ.notes.append(UNSPLIT_NOTE)
    return econ, why


def print_costs(econ, why, console) -> None:
    """The cost lines (economics_view.print_economics) under a heading saying what they are of."""
    from infersim.cli.economics_view import print_economics
    say = lambda x: console.print(x, markup=False, highlight=False)  # noqa: E731
    say("cost at the simulated throughput and utilisation (infersim.economics):")
    print_economics(econ, why, lambda x: say("  " + x))

