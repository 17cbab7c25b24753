"""Model catalog: config.json parsing, parameter counts vs published figures, name resolution, errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from infersim.catalog import models as M
from infersim.catalog.models import (
    AttentionSpec,
    DenseFFNSpec,
    MambaSpec,
    MoESpec,
    list_models,
    load_model,
    parse_hf_config,
)
from infersim.datasets import measurements_csv
from infersim.errors import InputError

DATA = M.DATA_DIR
MEASUREMENTS = measurements_csv()  # the shipped calibration set

# Published figures, typed from the sources (hardware_and_models.md sections 5/6 and the "Published"
# column of the shared reference/configs/README.md). Tolerance is 3% for all of them.
#
# The last column says whether the published *active* figure counts the input embedding.
# infersim's ModelArch.active_params excludes it (OpenAI / NVIDIA convention). Meta, Mistral, Qwen and
# DeepSeek quote active counts that include it; for those we compare active_params + embedding_params.
# Without that, Qwen3-30B-A3B (3.04B vs 3.3B, -8%) and both Llama-4 models (16.1B vs 17B, -5%) would be
# out of tolerance purely because of the counting convention.
#
# Llama-4-Scout: Meta's 109B total includes the ~0.87B vision tower; we count the text model only
# (107.8B, -1.1%), which is inside 3%, so no special case is needed.
# DeepSeek: the 671B total excludes the MTP module (HF's 685B includes it); so does our count.
PUBLISHED = {
    # name: (total, active or None, active_includes_embedding)
    "llama-2-7b": (6.7e9, None, None),
    "llama-2-13b": (13.0e9, None, None),
    "llama-2-70b": (69e9, None, None),
    "llama-3.1-8b": (8.03e9, None, None),
    "llama-3.1-70b": (70.6e9, None, None),
    "llama-3.1-405b": (405.9e9, None, None),
    "llama-3.3-70b": (70.6e9, None, None),
    "llama-4-scout": (109e9, 17e9, True),
    "llama-4-maverick": (400e9, 17e9, True),
    "mixtral-8x7b": (46.7e9, 12.9e9, True),
    "qwen3-30b-a3b": (30.5e9, 3.3e9, True),
    "qwen3-235b-a22b": (235e9, 22e9, True),
    "deepseek-r1": (671e9, 37e9, True),
    "deepseek-v3": (671e9, 37e9, True),
    "gpt-oss-20b": (20.9e9, 3.6e9, False),
    "gpt-oss-120b": (116.8e9, 5.1e9, False),
    "nemotron-3-nano": (31.6e9, 3.2e9, False),  # NVIDIA: 3.2B excludes embedding (3.5B with it)
    "nemotron-3-super": (120e9, 12e9, False),
    "nemotron-3-ultra": (550e9, 55e9, False),
    "llama-3.3-nemotron-super-49b": (49.9e9, None, None),
    "gpt-j-6b": (6.053e9, None, None),
    "falcon-180b": (180e9, None, None),
}
TOL = 0.03


def test_catalog_names_match_expected():
    assert set(M.catalog_names()) == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_params_match_published(name):
    arch = load_model(name)
    total, active, incl_emb = PUBLISHED[name]
    assert arch.total_params == pytest.approx(total, rel=TOL), f"{name}: total {arch.total_params / 1e9:.2f}B"
    if active is None:
        assert not isinstance(arch.layers[0].ffn, MoESpec)
        # dense: active = total - embedding (tied embeddings: the shared matrix is the lm_head, so total)
        expected = arch.total_params if arch.tie_embeddings else arch.total_params - arch.embedding_params
        assert arch.active_params == expected
    else:
        assert arch.n_moe_layers > 0
        computed = arch.active_params + (arch.embedding_params if incl_emb else 0)
        assert computed == pytest.approx(active, rel=TOL), f"{name}: active {computed / 1e9:.2f}B"
    # the index carries the same published figures as this test
    assert arch.published_total_params == total
    assert arch.published_active_params == active


def test_index_entries_are_well_formed():
    seen: set[str] = set()
    for e in M.catalog_entries():
        for key in ("name", "hf_id", "aliases", "config", "family", "published_total_params",
                    "published_source", "active_params_convention", "note"):
            assert key in e, (e["name"], key)
        assert e["name"] == e["name"].lower()
        assert e["family"] in M.FAMILIES
        assert (DATA / e["config"] / "config.json").is_file()
        for k in [e["name"], e["hf_id"], *e["aliases"]]:
            assert k.lower() not in seen, k
            seen.add(k.lower())
        # published_active_includes_embedding agrees with the literal table above
        assert e.get("published_active_includes_embedding") == PUBLISHED[e["name"]][2]


def _reference_counts() -> list[dict]:
    """tests/data/reference_param_counts.csv: counts computed by an independent script (source in its header)."""
    path = Path(__file__).resolve().parent / "data" / "reference_param_counts.csv"
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def _half_last_digit(text: str) -> float:
    """Half a unit in the last printed digit of a decimal string: the rounding of a printed figure."""
    return 0.5 * 10.0 ** -len(text.partition(".")[2])


def test_every_shipped_config_has_a_reference_count():
    assert {r["config"] for r in _reference_counts()} == {e["config"] for e in M.catalog_entries()}


@pytest.mark.parametrize("ref", _reference_counts(), ids=lambda r: r["config"])
def test_params_match_independent_reference_count(ref):
    """Our count equals a second, independent count of the same config.json to the digits it prints
    (its convention: total adds any vision tower; active adds the input embedding, which ours leaves out)."""
    arch = load_model(next(e["name"] for e in M.catalog_entries() if e["config"] == ref["config"]))
    vision = float(ref["vision_b"] or 0) * 1e9
    slack = _half_last_digit(ref["vision_b"]) * 1e9 if ref["vision_b"] else 0.0
    total = float(ref["total_b"]) * 1e9
    assert abs(arch.total_params + vision - total) <= _half_last_digit(ref["total_b"]) * 1e9 + slack, \
        f"{ref['config']}: total {arch.total_params / 1e9:.3f}B vs {ref['total_b']}B"
    if ref["active_b"]:
        active = float(ref["active_b"]) * 1e9
        ours = arch.active_params + (0 if arch.tie_embeddings else arch.embedding_params) + vision
        assert abs(ours - active) <= _half_last_digit(ref["active_b"]) * 1e9 + slack, \
            f"{ref['config']}: active {ours / 1e9:.3f}B vs {ref['active_b']}B"


def test_family_from_parser_matches_index():
    for e in M.catalog_entries():
        cfg = json.loads((DATA / e["config"] / "config.json").read_text())
        assert parse_hf_config(cfg, e["name"]).family == e["family"], e["name"]


# ---- hand-computed golden cases -----------------------------------------------------------------


def test_llama2_7b_total_by_hand():
    L, H, I, V = 32, 4096, 11008, 32000
    attn = 4 * H * H  # MHA: q, k, v, o
    mlp = 3 * H * I
    norms = 2 * H
    by_hand = V * H + L * (attn + mlp + norms) + H + V * H  # embed + layers + final norm + lm_head
    assert by_hand == 6_738_415_616
    arch = load_model("llama-2-7b")
    assert arch.total_params == by_hand
    assert arch.active_params == by_hand - V * H
    assert arch.native_dtype == "fp16" and arch.max_context == 4096


def test_llama31_70b_kv_elems():
    arch = load_model("llama-3.1-70b")
    (layer, n), = arch.layer_groups()
    assert n == 80
    assert layer.mixer.kv_cache_elems_per_token() == 2 * 8 * 128
    assert arch.kv_cache_elems_per_token == 80 * 2 * 8 * 128
    assert arch.kv_cache_elems(1000) == 1000 * 80 * 2 * 8 * 128


def test_deepseek_mla():
    arch = load_model("deepseek-r1")
    attn = arch.layers[0].mixer
    assert attn.kind == "mla"
    assert attn.kv_cache_elems_per_token() == 512 + 64
    assert attn.head_dim == 128 + 64 and attn.v_head_dim == 128
    assert arch.n_dense_ffn_layers == 3 and arch.n_moe_layers == 58
    assert all(isinstance(l.ffn, DenseFFNSpec) for l in arch.layers[:3])
    moe = arch.layers[3].ffn
    assert (moe.n_routed, moe.top_k, moe.n_shared, moe.expert_intermediate) == (256, 8, 1, 2048)
    assert arch.mtp_layers == 1
    assert arch.native_dtype == "fp8" and arch.quantization == "fp8-block"
    assert load_model("deepseek-v3").total_params == arch.total_params


def test_nemotron3_super_layout():
    arch = load_model("nemotron-3-super")
    assert (arch.n_mamba_layers, arch.n_moe_layers, arch.n_attention_layers) == (40, 40, 8)
    assert arch.n_layers == 88 and arch.n_dense_ffn_layers == 0
    moe = next(l.ffn for l in arch.layers if isinstance(l.ffn, MoESpec))
    assert moe.latent_size == 1024 and moe.n_routed == 512 and moe.top_k == 22
    # LatentMoE: routed experts work latent->I->latent; projections hidden<->latent are shared
    assert moe.expert_params(4096) == 2 * 1024 * 2688
    assert moe.latent_proj_params(4096) == 2 * 4096 * 1024
    mamba = arch.layers[0].mixer
    assert isinstance(mamba, MambaSpec)
    assert mamba.d_inner == 128 * 64
    assert mamba.state_elems_per_seq() == 128 * 64 * 128 + (8192 + 2 * 8 * 128) * 3
    assert arch.state_elems_per_seq == 40 * mamba.state_elems_per_seq()
    assert arch.kv_cache_elems_per_token == 8 * 2 * 2 * 128
    assert arch.mtp_layers == 1


def test_nemotron3_nano_mamba_params_by_hand():
    arch = load_model("nemotron-3-nano")
    assert (arch.n_mamba_layers, arch.n_moe_layers, arch.n_attention_layers) == (23, 23, 6)
    m = arch.layers[0].mixer
    H, d, G, N, nh, K = 2688, 4096, 8, 128, 64, 4
    conv_dim = d + 2 * G * N
    by_hand = H * (2 * d + 2 * G * N + nh) + conv_dim * K + conv_dim + 3 * nh + d + d * H
    assert m.n_params(H) == by_hand


def test_nemotron3_ultra_layers_from_block_type_list():
    cfg = json.loads((DATA / "nvidia__NVIDIA-Nemotron-3-Ultra-550B-A55B" / "config.json").read_text())
    assert "num_hidden_layers" not in cfg and "hybrid_override_pattern" not in cfg
    arch = load_model("nemotron-3-ultra")
    assert arch.n_layers == 108 == len(cfg["layers_block_type"])
    assert (arch.n_mamba_layers, arch.n_moe_layers, arch.n_attention_layers) == (48, 48, 12)


def test_gpt_oss_120b_sliding_and_full():
    arch = load_model("gpt-oss-120b")
    windows = [l.mixer.window for l in arch.layers]
    assert windows.count(128) == 18 and windows.count(None) == 18
    assert windows[0] == 128 and windows[1] is None
    a = arch.layers[0].mixer
    assert a.sinks and a.bias and (a.n_heads, a.n_kv_heads, a.head_dim) == (64, 8, 64)
    moe = arch.layers[0].ffn
    assert moe.bias and (moe.n_routed, moe.top_k) == (128, 4)
    assert arch.quantization == "mxfp4-experts"
    # sliding layers keep at most 128 tokens of KV
    per_tok = 2 * 8 * 64
    assert arch.kv_cache_elems(10_000) == 18 * 128 * per_tok + 18 * 10_000 * per_tok


def test_llama4_maverick_layout():
    arch = load_model("llama-4-maverick")
    assert arch.n_moe_layers == 24 and arch.n_dense_ffn_layers == 24
    assert isinstance(arch.layers[0].ffn, DenseFFNSpec) and isinstance(arch.layers[1].ffn, MoESpec)
    assert arch.layers[0].ffn.intermediate == 16384
    moe = arch.layers[1].ffn
    assert (moe.n_routed, moe.top_k, moe.n_shared, moe.expert_intermediate) == (128, 1, 1, 8192)
    # every 4th layer is global NoPE attention; the others use 8192-token chunks
    chunks = [l.mixer.chunk for l in arch.layers]
    assert chunks.count(None) == 12 and chunks.count(8192) == 36
    assert all(chunks[i] is None for i in range(3, 48, 4))


def test_llama4_scout_all_moe():
    arch = load_model("llama-4-scout")
    assert arch.n_moe_layers == 48 and arch.n_dense_ffn_layers == 0
    assert arch.max_context == 10485760


def test_nas_layers():
    arch = load_model("llama-3.3-nemotron-super-49b")
    assert arch.n_layers == 80
    assert arch.n_attention_layers == 49
    sizes = {l.ffn.intermediate for l in arch.layers if l.ffn is not None}
    assert {28672, 14336, 7168, 5632, 2816, 17920} <= sizes  # roundup256(2*mult*H/3)
    assert all(l.n_norms == 1 for l in arch.layers if l.mixer is None)


def test_gptj_and_falcon():
    gj = load_model("gpt-j-6b")
    assert gj.lm_head_bias and gj.layers[0].ffn.intermediate == 4 * 4096 and gj.max_context == 2048
    f = load_model("falcon-180b")
    a = f.layers[0].mixer
    assert (a.n_heads, a.n_kv_heads, a.head_dim) == (232, 8, 64)
    assert f.tie_embeddings and f.layers[0].ffn.intermediate == 4 * 14848


def test_qwen3_qk_norm_counted():
    arch = load_model("qwen3-30b-a3b")
    a = arch.layers[0].mixer
    assert a.qk_norm
    H = 2048
    assert a.n_params(H) == H * (32 * 128 + 2 * 4 * 128) + 32 * 128 * H + 2 * 128


def test_layer_groups_cover_all_layers():
    for name in M.catalog_names():
        arch = load_model(name)
        groups = arch.layer_groups()
        assert sum(n for _, n in groups) == arch.n_layers
        assert len({id(l) for l, _ in groups}) == len(groups)
        assert sum(arch.layer_kinds().values()) >= arch.n_layers


# ---- name resolution ----------------------------------------------------------------------------


def test_aliases_and_forms_resolve():
    a = load_model("llama-2-70b")
    assert load_model("meta-llama/Llama-2-70b-chat-hf") is a
    assert load_model("META-LLAMA/LLAMA-2-70B-HF") is a
    assert load_model("meta-llama__Llama-2-70b-hf") is a
    assert load_model("meta-llama/Meta-Llama-3.1-8B-Instruct").name == "llama-3.1-8b"
    assert load_model("meta-llama/Llama-3.1-8B").name == "llama-3.1-8b"
    assert load_model("deepseek-ai/DeepSeek-V3").name == "deepseek-v3"
    assert load_model("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B").name == "nemotron-3-nano"
    assert load_model("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8").name == "nemotron-3-super"


def test_measurement_models_resolve():
    with MEASUREMENTS.open(newline="", encoding="utf-8") as f:
        names = {row["model"] for row in csv.DictReader(f)}
    assert names
    for n in sorted(names):
        assert load_model(n).n_layers > 0, n


def test_load_from_path_and_folder(tmp_path):
    src = DATA / "meta-llama__Llama-3.1-8B-Instruct" / "config.json"
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_bytes(src.read_bytes())
    by_file = load_model(str(folder / "config.json"))
    by_dir = load_model(str(folder))
    assert by_file.name == by_dir.name == "my-model"
    assert by_file.total_params == load_model("llama-3.1-8b").total_params
    assert by_file.published_total_params is None


def test_list_models():
    rows = list_models()
    assert [r["name"] for r in rows] == M.catalog_names()
    sup = next(r for r in rows if r["name"] == "nemotron-3-super")
    assert sup["layers"] == 88
    assert sup["layer_kinds"] == {"attention": 8, "mamba": 40, "moe": 40, "dense_ffn": 0}
    assert sup["published_active_params"] == 12e9
    for r in rows:
        for k in ("name", "hf_id", "family", "total_params", "active_params", "layers", "layer_kinds",
                  "published_total_params", "published_active_params", "aliases"):
            assert k in r


# ---- error paths --------------------------------------------------------------------------------


def test_unknown_name_suggests_close_match():
    with pytest.raises(InputError) as ei:
        load_model("llama-3.1-70")
    msg = str(ei.value)
    assert "llama-3.1-70b" in msg and "\n" not in msg


def test_missing_field_names_the_field(tmp_path):
    cfg = json.loads((DATA / "meta-llama__Llama-3.1-8B-Instruct" / "config.json").read_text())
    del cfg["num_attention_heads"]
    with pytest.raises(InputError, match="num_attention_heads"):
        parse_hf_config(cfg, "broken")
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="missing field 'num_attention_heads'"):
        load_model(str(p))


def test_unsupported_model_type_lists_supported():
    with pytest.raises(InputError, match="supported: .*llama"):
        parse_hf_config({"model_type": "bert"}, "x")


def test_malformed_json_reports_file_and_line(tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{\n  "model_type": "llama",\n  "hidden_size": 4096,,\n}\n')
    with pytest.raises(InputError) as ei:
        load_model(str(p))
    msg = str(ei.value)
    assert str(p) in msg and "line 3" in msg and "\n" not in msg


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model(str(tmp_path / "nope.json"))
    with pytest.raises(InputError, match="no config.json"):
        load_model(str(tmp_path))


def test_nemotron_h_layer_count_mismatch():
    cfg = json.loads((DATA / "nvidia__NVIDIA-Nemotron-3-Nano-30B-A3B-BF16" / "config.json").read_text())
    cfg["num_hidden_layers"] = 50
    with pytest.raises(InputError, match="num_hidden_layers"):
        parse_hf_config(cfg, "nano")


def test_specs_are_frozen_and_hashable():
    a = AttentionSpec("gqa", 8, 8, 64, 64)
    with pytest.raises(Exception):
        a.n_heads = 4  # type: ignore[misc]
    assert hash(a) == hash(AttentionSpec("gqa", 8, 8, 64, 64))
