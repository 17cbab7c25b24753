"""Dataset-length workloads (MLPerf rows), source-grouped cross-validation folds and grid-edge flags."""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from infersim.calibration.efficiency import load_calibration
from infersim.catalog.hardware import load_catalog
from infersim.datasets import measurements_csv
from infersim.errors import InputError
from infersim.validation import fit
from infersim.validation.folds import grid_edges, source_folds, source_group
from infersim.validation.measurements import REQUIRED_COLUMNS, read_measurements
from infersim.validation.report import validate
from infersim.validation.scenarios import Skip, plan_row, predict
from infersim.validation.simulated import simulation_job
from infersim.workload.datasets import MLPERF_DIR, length_mix, rescaled

COLUMNS = list(REQUIRED_COLUMNS) + ["software", "trust", "source", "notes"]


def _write(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def _shipped(rid: str) -> dict:
    with measurements_csv().open(newline="", encoding="utf-8") as f:
        return next(r for r in csv.DictReader(f) if r["id"] == rid)


# ------------------------------------------------------------------------------------------------
# length workload
# ------------------------------------------------------------------------------------------------

def test_rescaled_hits_the_mean_by_hand():
    # no cap: factor 2 exactly
    assert rescaled(np.array([1, 2, 3, 6]), 6.0).tolist() == [2, 4, 6, 12]
    # cap 10: the largest sticks at 10, so the others must grow: s just above 2.25 gives
    # round(2.25+) = 2, round(4.5+) = 5, round(6.75+) = 7, min(13.5+, 10) = 10 -> mean 24 / 4 = 6
    assert rescaled(np.array([1, 2, 3, 6]), 6.0, cap=10).tolist() == [2, 5, 7, 10]
    # a length above the cap is capped before scaling (DeepSeek-R1's uncapped reference outputs)
    assert rescaled(np.array([10, 40]), 15.0, cap=20).tolist() == [10, 20]


def test_length_mix_keeps_inputs_and_scales_outputs_to_the_row_mean():
    mix, notes = length_mix("mlperf-openorca", "meta-llama/Llama-2-70b-chat-hf", 290)
    inp, out = mix.pairs()
    with (MLPERF_DIR / "llama2-70b-openorca.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert inp.tolist() == [int(r["input_length"]) for r in rows]
    assert abs(out.mean() - 290) < 0.5 and out.max() <= 1024 and out.min() >= 1
    assert any("GPT-4 answer" in n for n in notes), notes
    # the row gives no output mean: the benchmark's reference mean, said so
    mix, notes = length_mix("mlperf-openorca", "meta-llama/Llama-2-70b-chat-hf", None)
    assert abs(mix.pairs()[1].mean() - 294.45) < 0.5 and any("294.45" in n for n in notes)
    # CNN/DM for Llama-3.1-8B has no output lengths: every output is the row's mean
    mix, _ = length_mix("mlperf-cnndm", "meta-llama/Llama-3.1-8B-Instruct", 129)
    assert set(mix.pairs()[1].tolist()) == {129}


def test_length_mix_refuses_what_it_cannot_replay():
    with pytest.raises(InputError, match="GPT-J"):
        length_mix("mlperf-cnndm", "EleutherAI/gpt-j-6b", 128)
    with pytest.raises(InputError, match="tokenizer"):
        length_mix("mlperf-openorca", "meta-llama/Llama-3.1-8B-Instruct", 290)
    with pytest.raises(InputError, match="no per-sample lengths"):
        length_mix("sharegpt", "meta-llama/Llama-3.1-8B-Instruct", 290)


def test_sampling_is_seeded_and_uses_every_sample_before_repeating():
    mix, _ = length_mix("mlperf-deepseek-r1", "deepseek-ai/DeepSeek-R1", 3748)
    inp, out = mix.pairs()
    a, b = mix.sample(3 * len(inp), seed=7), mix.sample(3 * len(inp), seed=7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(mix.sample(100, seed=8)[0], a[0][:100])
    first = np.stack(a)[:, : len(inp)]
    assert sorted(map(tuple, first.T)) == sorted(zip(inp.tolist(), out.tolist()))  # a permutation of the pairs


def test_cells_are_a_quadrature_of_the_mix():
    mix, _ = length_mix("mlperf-llama3.1-405b", "meta-llama/Llama-3.1-405B-Instruct", 652)
    inp, out = mix.pairs()
    ci, co, w = mix.cells()
    assert w.sum() == pytest.approx(1.0) and np.all(w > 0)
    assert np.sum(w * ci) == pytest.approx(inp.mean()) and np.sum(w * co) == pytest.approx(out.mean())
    assert ci.min() >= inp.min() and ci.max() <= inp.max()


# ------------------------------------------------------------------------------------------------
# MLPerf rows predicted
# ------------------------------------------------------------------------------------------------

def test_mlperf_row_is_predicted_with_its_assumptions_and_gptj_cnndm_is_skipped(tmp_path):
    offline = _shipped("M005")  # Llama-2-70B, 8 x H200, offline, no input_len
    gptj = dict(offline, id="G1", model="EleutherAI/gpt-j-6b", output_len="128",
                notes="dataset=mlperf-cnndm (GPT-J)")
    path = _write(tmp_path / "m.csv", [offline, gptj])
    rep = validate(path, method="analytical")
    (row,) = rep.rows
    assert row.id == "M005" and np.isfinite(row.predicted) and row.predicted > 0
    assert any(a.startswith("lengths: mlperf-openorca") for a in row.assumptions), row.assumptions
    assert any("GPT-4 answer" in a for a in row.assumptions)
    (skip,) = rep.skipped
    assert skip.id == "G1" and "dataset=mlperf-cnndm" in skip.reason and "GPT-J" in skip.reason


def test_mlperf_row_costs_follow_the_length_mix_not_the_mean_lengths():
    """The mix's long requests cost more than their share at the mean (prefill attention grows
    with length; a batch slot is held longest by the longest outputs, so the batch's context is
    above the mean): offline throughput on the mix is below that at the mean lengths."""
    catalog, cal = load_catalog(), load_calibration()
    m = {r.id: r for r in read_measurements(measurements_csv())}["M005"]
    plan = plan_row(m, catalog, cal)
    assert not isinstance(plan, Skip) and plan.lengths is not None
    assert plan.input_len == round(plan.lengths.pairs()[0].mean())
    fixed = plan_row(replace(m, input_len=plan.input_len, notes=""), catalog, cal)
    assert fixed.lengths is None
    assert float(predict(plan)) < float(predict(fixed))
    job = simulation_job(plan)
    inp, out = job.request_lengths()
    assert len(inp) == job.requests and len(set(inp.tolist())) > 100  # the dataset's lengths, not one


# ------------------------------------------------------------------------------------------------
# source groups and folds
# ------------------------------------------------------------------------------------------------

def test_source_groups_by_hand():
    a = "github.com/mlcommons/inference_results_v5.1 : closed/NVIDIA/results/B200-SXM-180GBx8_TRT/llama2-70b-99/Server/x.txt"
    b = "github.com/mlcommons/inference_results_v5.1 : closed/NVIDIA/results/GB300-NVL72/deepseek-r1/Offline/x.txt"
    c = "github.com/mlcommons/inference_results_v4.1 : closed/NVIDIA/results/B200-SXM-180GBx1_TRT/llama2-70b-99/Server/x.txt"
    assert source_group(a) == source_group(b) == "mlperf v5.1 closed/NVIDIA" != source_group(c)
    assert (source_group("github.com/NVIDIA/TensorRT-LLM docs/perf.md @00f37 (v1.0; metric = total)")
            == source_group("github.com/NVIDIA/TensorRT-LLM docs/perf.md @00f37 (other remark)"))
    assert source_group("https://www.Example.com/page/ (x)") == "example.com/page"


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=40))
def test_source_folds_never_split_a_group(groups):
    folds = source_folds(groups)
    for i, g in enumerate(groups):
        for j, h in enumerate(groups):
            assert (folds[i] == folds[j]) == (g == h)


def _two_source_rows(tmp_path: Path) -> list[dict]:
    base = {"model": "meta-llama/Llama-3.1-8B-Instruct", "chip": "h100-sxm", "n_chips": "1", "precision": "bf16",
            "scenario": "fixed_batch", "input_len": "128", "output_len": "128", "spec_decode": "no",
            "stat": "mean", "unit": "ms"}
    rows = ([dict(base, id=f"A{i}", batch=b, metric="tpot_ms", source="doc-a.example/page (run 1)")
             for i, b in enumerate((1, 8, 32))]
            + [dict(base, id=f"B{i}", batch=b, input_len="2048", metric="ttft_ms",
                    source="https://doc-b.example/page @abc") for i, b in enumerate((1, 16, 64))])
    catalog, none = load_catalog(), load_calibration("none")
    draft = _write(tmp_path / "draft.csv", [dict(r, value="1") for r in rows])
    scale = {"A": 1.0, "B": 1.7}  # the two sources disagree, so fits with and without one differ
    for r, m in zip(rows, read_measurements(draft)):
        r["value"] = f"{float(predict(plan_row(m, catalog, none))) * scale[m.id[0]]:.6g}"
    return rows


def test_grouped_heldout_comes_from_the_fit_without_the_whole_source(tmp_path):
    rows = _two_source_rows(tmp_path)
    res = fit.calibrate(_write(tmp_path / "all.csv", rows))
    assert res.fit_file["source_groups"] == {"doc-a.example/page": ["A0", "A1", "A2"],
                                            "doc-b.example/page": ["B0", "B1", "B2"]}
    for held, other in (("A", "B"), ("B", "A")):
        only_other = fit.calibrate(_write(tmp_path / f"{other}.csv", [r for r in rows if r["id"][0] == other]))
        want = only_other.fit_file["families"]["pooled-gpu"]["values"]
        for rid in (f"{held}0", f"{held}1", f"{held}2"):
            assert res.fit_file["heldout_grouped_params"][rid] == pytest.approx(want, rel=1e-12), rid
    # row folds (leave-one-out here) keep a held-out row's siblings in training: they differ
    assert any(res.heldout[r] != pytest.approx(res.heldout_grouped[r], rel=1e-6) for r in res.heldout)


# ------------------------------------------------------------------------------------------------
# grid edges
# ------------------------------------------------------------------------------------------------

def test_grid_edges_by_hand():
    grid = {"a": np.array([0.1, 0.5, 1.0]), "b": np.array([0.1, 0.5, 1.0]), "c": np.array([0.0, 1e-3, 3e-3]),
            "fixed": np.array([2.0])}
    flags = grid_edges({"a": 0.1, "b": 0.5, "c": 3e-3, "fixed": 2.0}, grid)
    assert flags == {"a": "lower edge (0.1)", "c": "upper edge (0.003)"}


def test_calibrate_flags_every_fitted_value_on_an_edge(tmp_path):
    res = fit.calibrate(_write(tmp_path / "all.csv", _two_source_rows(tmp_path)))
    for name, entry in res.fit_file["families"].items():
        grid = fit.GRIDS[name.removeprefix("pooled-") if name.startswith("pooled-") else "gpu"]
        for p, v in entry["values"].items():
            on_edge = v in (float(np.min(grid[p])), float(np.max(grid[p])))
            assert (p in entry["at_grid_edge"]) == on_edge, (name, p, v)
