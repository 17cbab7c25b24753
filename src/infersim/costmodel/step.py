"""Time of one engine step of one replica, split into compute / memory / interconnect / overhead.

This is the single place where work (costmodel.work), execution models (costmodel.execution) and
the parallel layout meet; the estimate, validation and the serving simulator all come through here.

`step_time` evaluates a uniform batch (every sequence adds `new` tokens after `past`); `StepCost`
evaluates any `StepShape` (mixed decode + prefill-chunk steps, many steps at once). StepCost can
compile the model's ops once into an affine table: every op's FLOPs and bytes are affine in the
shape's sums (sequences, decode and prefill tokens, attention pairs and KV reads per window, and
per MoE kind the expected distinct experts, or with whole-expert groups the busiest group's touched
experts and routed token copies), so probing `model_ops` at the zero shape and at each unit
shape recovers them exactly; evaluating a step is then one matrix product. Same formulas, same
numbers up to float rounding (tested), about 10x faster per step.
"""
from __future__ import annotations

import numpy as np


from infersim.costmodel.collectives import Comm, p2p, step_collectives
from infersim.costmodel.dataflow_links import dataflow_links
from infersim.costmodel.execution import (CATEGORIES, Breakdown, collective_time, dataflow_op_times, dataflow_rates,
                                          dataflow_table_time, gpu_rates, gpu_table_time,
                                          op_arrays, op_counts, op_rates, pipeline_latency, roofline_seconds,
                                          stage_layers)
from infersim.catalog.engines import engine as default_engine
from infersim.costmodel.overhead import SIDES, step_overhead
from infersim.costmodel.timer import DecodeStep, ShapeTimer
from infersim.costmodel.work import (GLOBAL_OPS, AttnSums, Batch, Sharding, StepShape, batch_shape, busiest_rank_seqs,
                                     dp_rank_imbalance,
                                     model_ops, model_windows)
from infersim.catalog.models import MoESpec
from infersim.mapping.deployment import Deployment


def step_time(dep: Deployment, seqs, new, past, span=1.0, cost: "StepCost | None" = None) -> Breakdown:
    """One step: `seqs` sequences each adding `new` tokens after `past` cached ones (arrays
    broadcast). For decode (new == 1) `span` averages the step over that many consecutive steps.
    `cost`: an uncompiled StepCost of `dep` to reuse (a caller timing several steps)."""
    shape = batch_shape(Batch(seqs=np.asarray(seqs, dtype=float), new=np.asarray(new, dtype=float),
                              past=np.asarray(past, dtype=float), span=span), model_windows(dep.model))
    return (cost or StepCost(dep, compiled=False)).time(shape)


def _scalar(v) -> bool:
    """Whether v is one number (np.ndim(v) == 0; floats, np.float64 included, answered quickly)."""
    return isinstance(v, float) or np.ndim(v) == 0


class _ProbeShape(StepShape):
    """A StepShape whose expert counts are free features, for compiling the op table: per MoE
    kind the distinct experts (one column) or the busiest group's load (two columns)."""

    def __init__(self, base: StepShape, moe: dict):
        object.__setattr__(self, "seqs", base.seqs)
        object.__setattr__(self, "decode_tokens", base.decode_tokens)
        object.__setattr__(self, "prefill_tokens", base.prefill_tokens)
        object.__setattr__(self, "attn", base.attn)
        object.__setattr__(self, "_moe", moe)

    def distinct_experts(self, n_experts: int, top_k: int):
        return self._moe[(n_experts, top_k)][0]

    def busiest_group_load(self, n_experts: int, top_k: int, groups: int):
        experts, copies = self._moe[(n_experts, top_k)]
        return experts, copies


def _op_selection(mask: np.ndarray, rate: np.ndarray, counts: np.ndarray) -> tuple:
    """(which ops, their peak rates, their layer counts) for the ops where `mask` holds; a
    contiguous run of ops is selected with a slice (a view: no copy)."""
    idx = np.flatnonzero(mask)
    run = len(idx) > 0 and idx[-1] - idx[0] + 1 == len(idx)
    return (slice(idx[0], idx[-1] + 1) if run else idx), rate[idx], counts[idx]


class StepCost(ShapeTimer):
    """Step times of one deployment for arbitrary step shapes (arrays of steps broadcast); the
    plain `StepTimer` (one token per decode step)."""

    def __init__(self, dep: Deployment, compiled: bool = True, host: bool = True, sides: tuple[str, ...] = SIDES):
        """host=False leaves the engine's host work out (a caller that pays it once per step, as
        AFD does); `sides` are the kernel sides this GPU runs (costmodel.overhead)."""
        self.dep = dep
        self.host = host
        self.sides = sides
        self.windows = model_windows(dep.model)
        self.moe_kinds = tuple(dict.fromkeys((l.ffn.n_routed, l.ffn.top_k) for l, _ in dep.model.layer_groups()
                                             if isinstance(l.ffn, MoESpec)))
        par = dep.par
        self._dataflow = dep.dataflow
        self._pp = 1 if dep.dataflow else par.pp  # pipeline stages a step passes through
        self.sharding = Sharding() if dep.dataflow else Sharding(tp=par.tp, ep=par.ep, pp=par.pp, moe_ep=par.moe_ep)
        self._groups = self.sharding.expert_groups  # > 1: two expert features per MoE kind (_features)
        self.layer_frac = 1.0 if dep.dataflow else 1.0 / par.pp
        self._dp = 1 if dep.dataflow else par.ep  # attention data-parallel ranks
        self._global_ops = None  # which ops (columns) span every rank's tokens: set by _compile
        self._comm_memo: dict[tuple, float] = {}  # see _comm_seconds
        self._imbalance_memo: dict[float, np.ndarray] = {}  # see _imbalance
        self._busiest_memo: dict[float, np.ndarray] = {}  # see _busiest
        self._n_linear = 3 + 3 * len(self.windows)
        n_features = self._n_linear + self._moe_width * len(self.moe_kinds)
        self._base_cols = [0, 1, 2] + list(range(self._n_linear, n_features))  # all but attention sums
        if not dep.dataflow:
            engine = dep.engine or default_engine()
            self.overhead = step_overhead(dep.model, engine if host else engine.sharing_host(), dep.eff, sides)
        self._compiled = compiled
        self._table_memo = None  # the compiled op table, built on first use (see `_table`)
        self._rest = None
        self._plain = False  # set by _compile_rest
        self._constant_ops: dict[tuple, float] = {}  # see _constant_ops_seconds

    @property
    def _table(self):
        """The compiled op table (`_compile`), or None for an uncompiled StepCost. Built on first
        use: a plan builds a timer for every pool, and a static estimate never steps one."""
        if self._table_memo is None and self._compiled:
            self._table_memo = self._compile()
        return self._table_memo

    # -- op evaluation -------------------------------------------------------------------------
    def _features(self, shape: StepShape) -> list:
        f = [shape.seqs, shape.decode_tokens, shape.prefill_tokens]
        for w in self.windows:
            a = shape.attn[w]
            f += [a.pairs_decode, a.pairs_prefill, a.kv_read]
        for n, k in self.moe_kinds:
            if self._groups > 1:
                f += list(shape.busiest_group_load(n, k, self._groups))
            else:
                f.append(shape.distinct_experts(n, k))
        return f

    @property
    def _moe_width(self) -> int:
        """Features per MoE kind: the distinct experts, or the busiest group's experts and copies."""
        return 2 if self._groups > 1 else 1

    @staticmethod
    def _matrix(features: list) -> np.ndarray:
        """Features as a vector (one step) or a matrix (steps x features, laid out features x
        steps); a scalar feature (the same in every step) broadcasts over the steps."""
        arrays = [f for f in features if isinstance(f, np.ndarray) and f.ndim]
        if not arrays:
            return np.array(features, dtype=float)
        shape = arrays[0].shape
        if any(a.shape != shape for a in arrays):
            shape = np.broadcast_shapes(*(a.shape for a in arrays))
        x = np.empty((len(features),) + shape)
        for i, f in enumerate(features):
            x[i] = f
        return x.T if x.ndim == 2 else np.moveaxis(x, 0, -1)

    def _probe(self, n_features: int):
        """A shape whose features are the columns of [0; I]: row 0 is the zero shape, row j the
        unit shape of feature j-1 (features in `_features` order), so affine parts can be read off."""
        cols = iter(np.vstack([np.zeros(n_features), np.eye(n_features)]).T)
        base = StepShape(next(cols), next(cols), next(cols),
                         {w: AttnSums(next(cols), next(cols), next(cols)) for w in self.windows})
        if n_features == self._n_linear:
            return base
        width = self._moe_width
        return _ProbeShape(base, {kind: (next(cols), next(cols) if width == 2 else None) for kind in self.moe_kinds})

    def _compile(self):
        shape = self._probe(self._n_linear + self._moe_width * len(self.moe_kinds))
        ops = model_ops(self.dep.model, shape, self.sharding, self.dep.plan)
        flops, byts, _, _ = op_arrays(ops, self.dep.chip, self.dep.plan)
        self._global_ops = np.array([op.name in GLOBAL_OPS for op in ops])
        return (flops[0], flops[1:] - flops[0], byts[0], byts[1:] - byts[0],
                op_rates(ops, self.dep.chip, self.dep.plan), op_counts(ops, self.layer_frac))

    def _imbalance(self, seqs):
        """The busiest attention rank's work over the mean rank's (None without DP attention);
        remembered per scalar sequence count (the simulator repeats batch sizes)."""
        if self._dp <= 1:
            return None
        if np.ndim(seqs):
            return dp_rank_imbalance(seqs, self._dp)
        key = float(seqs)
        f = self._imbalance_memo.get(key)
        if f is None:
            f = self._imbalance_memo[key] = dp_rank_imbalance(seqs, self._dp)
        return f

    def _busiest(self, y: np.ndarray, f) -> np.ndarray:
        """Shape-dependent op work of the mean rank (x @ table, op axis last) -> the busiest rank's:
        rank-local ops scale by f (their work is linear in the rank's share), global ops do not."""
        if f is None:
            return y
        if np.ndim(f):
            return y * np.where(self._global_ops, 1.0, np.asarray(f, dtype=float)[..., None])
        key = float(f)
        scale = self._busiest_memo.get(key)
        if scale is None:  # one factor per op, remembered per scalar f
            scale = self._busiest_memo[key] = np.where(self._global_ops, 1.0, np.asarray(f, dtype=float)[..., None])
        return y * scale

    def _ops(self, shape: StepShape):
        f = self._imbalance(shape.seqs)
        if self._table is None:
            ops = model_ops(self.dep.model, shape, self.sharding, self.dep.plan)
            if f is not None:  # rank-local ops at the busiest rank's share of the step
                busy = model_ops(self.dep.model, shape.scaled(f), self.sharding, self.dep.plan)
                ops = [o if o.name in GLOBAL_OPS else b for o, b in zip(ops, busy)]
            return op_arrays(ops, self.dep.chip, self.dep.plan, self.layer_frac)
        f0, fm, b0, bm, rates, counts = self._table
        x = np.stack(np.broadcast_arrays(*self._features(shape)), axis=-1)
        return f0 + self._busiest(x @ fm, f), b0 + self._busiest(x @ bm, f), rates, counts

    # -- step time -----------------------------------------------------------------------------
    def time(self, shape: StepShape) -> Breakdown:
        """Step time split into compute / memory / interconnect / overhead."""
        if self.dep.dataflow:
            return self._dataflow_ops(shape) + self._dataflow_rest(shape)
        micro = self._micro(shape)
        busy = self._gpu_ops(micro).scaled(self.dep.par.pp) + self._gpu_rest(shape, micro)
        p = self.overhead.parts(*self.rank_step(shape), busy.total)
        return busy + Breakdown(0.0, 0.0, 0.0, p["launch"] + p["exposed"])


    def decode_step(self, batch: float, past: float, span: float) -> DecodeStep:
        b = self.time(self.uniform_decode_shape(batch, past, span))
        tot = float(b.total)
        return DecodeStep(tot, {self.dep.chip.kind: {k: float(getattr(b, k)) / tot for k in CATEGORIES}})

    def total(self, shape: StepShape) -> np.ndarray:
        """Step time in seconds only: the same formulas as `time` (equal up to float rounding), on
        the compiled table. The part outside the op roofline (collectives, fixed overheads) is
        affine in the shape's token and sequence sums, so it is compiled too."""
        table = self._table
        if table is None:
            return self.time(shape).total
        if self._rest is None:
            self._rest = self._compile_rest()
        if self._plain:
            return self._plain_total(shape, table)
        f0, fm, b0, bm, _, _ = table
        r0, rm, fixed = self._rest[:3]
        pp = self._pp
        micro = self._micro(shape) if pp > 1 else shape
        features = self._features(micro)
        x = self._matrix(features)
        steady = self._steady_features(features, x) if x.ndim == 2 and x.shape[0] > 1 else None
        f = self._imbalance(x[..., 0])  # feature 0: the step's sequences
        if steady is not None:
            # Many steps that differ only in attention work (a decode run over growing contexts):
            # the other ops are the same in every step, so evaluate them once.
            ops = (self._constant_ops_seconds(steady, x, None if f is None else f[0])
                   + self._op_seconds(f0 + self._busiest(x @ fm, f), b0 + self._busiest(x @ bm, f), self._attention_ops))
        else:
            ops = self._op_seconds(f0 + self._busiest(x @ fm, f), b0 + self._busiest(x @ bm, f), self._all_ops)
        lin = x[..., :self._n_linear] if pp == 1 else self._matrix(self._features(shape)[:self._n_linear])
        busy = ops + fixed + r0 + lin @ rm
        if self._dataflow:
            return busy
        return self.overhead.step_seconds(*self.rank_step(shape), busy + self._comm_seconds(micro))

    def _plain_total(self, shape: StepShape, table) -> np.ndarray:
        """`total` of a GPU deployment without pipeline stages or DP attention (the common case,
        `_plain`): the same operations, less those that add exact zeros (a GPU's non-roofline
        part is 0: collectives come from `_comm_seconds`) or scale by exactly 1."""
        f0, fm, b0, bm, _, _ = table
        features = self._features(shape)
        x = self._matrix(features)
        steady = self._steady_features(features, x) if x.ndim == 2 and x.shape[0] > 1 else None
        if steady is not None:
            ops = (self._constant_ops_seconds(steady, x, None)
                   + self._op_seconds(f0 + x @ fm, b0 + x @ bm, self._attention_ops))
        else:
            ops = self._op_seconds(f0 + x @ fm, b0 + x @ bm, self._all_ops)
        return self.overhead.step_seconds(shape.seqs, shape.prefill_tokens, ops + self._comm_seconds(shape))

    def rank_step(self, shape: StepShape):
        """(sequences, prefill tokens) of the busiest attention rank's share of the step: what its
        scheduler handles and its CUDA graphs must hold (work.busiest_rank_seqs); the step's own
        without DP attention."""
        if self._dp <= 1:
            return shape.seqs, shape.prefill_tokens
        seqs = np.asarray(shape.seqs, dtype=float)
        rank = busiest_rank_seqs(seqs, self._dp)
        return rank, np.asarray(shape.prefill_tokens, dtype=float) * np.where(seqs > 0, rank / np.maximum(seqs, 1e-300), 0.0)

    def _steady_features(self, features: list, x: np.ndarray) -> tuple | None:
        """The values of the non-attention features when they are the same in every step of x
        (scalars, as `decode_run_shape` gives them, or arrays holding one value), else None."""
        base = [features[i] for i in self._base_cols]
        if not any(isinstance(f, np.ndarray) and f.ndim for f in base):
            return tuple(float(f) for f in base)
        if np.any(np.ptp(x[:, self._base_cols], axis=0)):
            return None
        return tuple(x[0, self._base_cols].tolist())

    def _constant_ops_seconds(self, steady: tuple, x: np.ndarray, f):
        """Summed time of the ops without attention work for steps x whose non-attention features
        have the values `steady` in every step, evaluated at step 0. Those ops' flops and bytes do
        not depend on the attention features (their coefficients are exactly 0), so the result is
        remembered per value of `steady` (for a decode run: per batch size)."""
        seconds = self._constant_ops.get(steady)
        if seconds is None:
            f0, fm, b0, bm, _, _ = self._table
            seconds = self._op_seconds(f0 + self._busiest(x[0] @ fm, f), b0 + self._busiest(x[0] @ bm, f),
                                       self._constant_ops_sel)
            self._constant_ops[steady] = seconds
        return seconds

    def _op_seconds(self, flops, byts, selection) -> np.ndarray:
        """Summed time of the ops of `selection` (op indices or a slice over the op axis, with
        their peak rates and layer counts)."""
        which, rate, counts = selection
        flops, byts = flops[..., which], byts[..., which]
        bw, p = self._rest[4], self._rest[5]
        if self._dataflow:
            return (counts * np.maximum(*dataflow_op_times(flops, byts, rate, bw))).sum(axis=-1)
        seconds = (counts * roofline_seconds(flops, byts, rate, bw, p)).sum(axis=-1)
        return seconds * self._pp if self._pp > 1 else seconds

    def _micro(self, shape: StepShape) -> StepShape:
        # With pp stages the batch is split into pp micro-batches that fill the pipeline; a token's
        # step is pp stage-times of one micro-batch.
        pp = self.dep.par.pp
        return shape.scaled(1.0 / pp) if pp > 1 else shape

    def _compile_rest(self):
        """Affine coefficients of the non-roofline part over the linear features (dataflow chips'
        hops; GPU collectives are not affine: `_comm_seconds`), plus the fixed per-step pipeline
        latency and the scalar rates the roofline needs. Also sets the op selections `_op_seconds`
        takes (all ops, the attention ops, the others)."""
        shape = self._probe(self._n_linear)
        if self.dep.dataflow:
            rest = self._dataflow_rest(shape, hop_latency=False).total  # hop latency: in `fixed`
        else:
            rest = 0.0 * np.asarray(shape.seqs, dtype=float)  # launches and host work: self.overhead
        eff, chip = self.dep.eff, self.dep.chip
        peaks, counts = self._table[4], self._table[5]
        if self.dep.dataflow:
            cpl = self.dep.chips_per_replica / self.dep.model.n_layers  # chips per layer
            rate, bw = dataflow_rates(peaks, chip, eff, cpl)
            p = 1.0  # unused: dataflow ops take the hard max
            # the per-step constants: pipeline latency and the scale-out hops' latency (either may be
            # an array over parameter sets, as in a calibration grid)
            fixed = pipeline_latency(eff, stage_layers(self.dep.model)) + self._hop_out_latency()
        else:
            rate, bw, p = gpu_rates(peaks, chip, eff)
            fixed = 0.0  # kernel launches and host work: self.overhead, after the busy time
        fm, bm = self._table[1], self._table[3]
        attention_rows = slice(3, self._n_linear)
        attn_ops = np.any(fm[attention_rows] != 0, axis=0) | np.any(bm[attention_rows] != 0, axis=0)
        # op selections for _op_seconds
        self._all_ops = (slice(None), rate, counts)
        self._attention_ops = _op_selection(attn_ops, rate, counts)
        self._constant_ops_sel = _op_selection(~attn_ops, rate, counts)
        # `_plain_total` applies: no stages, no DP attention, a non-roofline part of exactly 0
        self._plain = (not self.dep.dataflow and self._pp == 1 and self._dp <= 1 and np.all(rest == 0.0)
                       and np.all(np.asarray(fixed) == 0.0))
        return rest[0], rest[1:] - rest[0], fixed, rate, bw, p, attn_ops

    def _gpu_ops(self, micro: StepShape) -> Breakdown:
        return gpu_table_time(*self._ops(micro), self.dep.chip, self.dep.eff)

    def _gpu_rest(self, shape: StepShape, micro: StepShape) -> Breakdown:
        """Collectives (TP all-reduce, EP all-to-all, PP send/recv); launches and the engine's host
        work are added by `self.overhead` (costmodel.overhead)."""
        comm = sum((c.seconds for c in self.collectives(micro)), 0.0 * np.asarray(shape.seqs, dtype=float))
        z = 0.0 * comm
        return Breakdown(z, z, comm, z)

    def collectives(self, micro: StepShape) -> list[Comm]:
        """The step's collectives, each with its side (attention / ffn / pipeline), for one
        micro-batch through every stage, sized for the busiest attention rank (costmodel.collectives)."""
        if self.dep.dataflow:
            return []
        f = self._imbalance(micro.seqs)
        return step_collectives(self.dep, self.sharding, micro, 1.0 if f is None else f)

    def _comm_seconds(self, micro: StepShape):
        """Summed seconds of the collectives (they depend on the step's sequences and tokens only;
        remembered per scalar pair, as the simulator repeats batch sizes)."""
        key = None
        if _scalar(micro.seqs) and _scalar(micro.decode_tokens) and _scalar(micro.prefill_tokens):
            key = (float(micro.seqs), float(micro.decode_tokens + micro.prefill_tokens))
            hit = self._comm_memo.get(key)
            if hit is not None:
                return hit
        seconds = sum((c.seconds for c in self.collectives(micro)), 0.0 * np.asarray(micro.seqs, dtype=float))
        if key is not None:
            self._comm_memo[key] = float(seconds)
            return float(seconds)
        return seconds

    def _dataflow_ops(self, shape: StepShape) -> Breakdown:
        """Per-token latency through the replica's layer pipeline (a whole batch moves as one
        micro-batch): layers in sequence, each on chips_per_replica / n_layers chips."""
        dep = self.dep
        return dataflow_table_time(*self._ops(shape), dep.chip, dep.eff, dep.chips_per_replica / dep.model.n_layers,
                                   stage_layers(dep.model))

    def _hop_out_latency(self):
        """Seconds of latency a token pays on the pipeline hops that leave a scale-up domain: their
        link's catalog latency times eff.hop_scale (fitted for wafers)."""
        links = dataflow_links(self.dep)
        if links.hop_out is None or links.hops_out == 0:
            return 0.0
        return links.hops_out * np.asarray(self.dep.eff.hop_scale, dtype=float) * float(links.hop_out.latency_s.value)

    def _dataflow_rest(self, shape: StepShape, hop_latency: bool = True) -> Breakdown:
        """Chip-to-chip traffic: the hidden state crosses every chip boundary of the pipeline, and
        a layer spread over several chips all-reduces each block's output (`dataflow_links`). Each
        collective uses the link its chips share (`dataflow_links`). hop_latency=False leaves out
        the scale-out hops' latency (`_hop_out_latency`, a per-step constant)."""
        dep, m, eff = self.dep, self.dep.model, self.dep.eff
        hidden_bytes = shape.tokens * m.hidden * dep.plan.act_bytes
        comm = 0.0 * np.asarray(hidden_bytes, dtype=float)
        links = dataflow_links(dep)
        if links.hop_up is not None and links.hops_up > 0:
            comm = comm + collective_time(links.hop_up, eff, 2, hidden_bytes * links.hops_up, float(links.hops_up), "p2p")
        if links.hop_out is not None and links.hops_out > 0:
            comm = comm + p2p(links.hop_out, eff, hidden_bytes * links.hops_out, links.hops_out, with_latency=False)
            if hop_latency:
                comm = comm + self._hop_out_latency()
        if links.all_reduce is not None and links.group > 1:
            comm = comm + collective_time(links.all_reduce, eff, links.group, hidden_bytes * links.all_reduces,
                                          float(links.all_reduces), "all_reduce")
        z = 0.0 * comm
        return Breakdown(z, z, comm, z)
