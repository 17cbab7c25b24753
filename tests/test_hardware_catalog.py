"""Hardware catalog: loading, lookups, overrides, and cross-checks of chip specs against rack specs."""
from __future__ import annotations

import csv

import pytest

from infersim.catalog.hardware import PRECISIONS, HardwareCatalog, Quantity, load_catalog
from infersim.datasets import measurements_csv
from infersim.errors import InputError

CALIBRATION_CSV = measurements_csv()  # the shipped calibration set

CHIPS = ["a100-sxm-80gb", "a100", "h100-sxm", "h100", "h100-pcie", "h100-nvl", "h200-sxm", "h200", "h200-nvl",
         "gh200", "b200", "gb200", "b300", "gb300", "rubin", "vr200", "rubin-gpu", "l40s", "rtx-pro-6000",
         "mi300x", "mi325x", "groq-lpu-v1", "groq-tsp-v1", "groqchip", "groq3-lpu", "lp30", "groq-3-lpu",
         "cerebras-wse3", "wse3", "wse-3", "xeon6-6900p", "grace-cpu", "vera-cpu"]
LINKS = ["nvlink3", "nvlink4", "nvlink5", "nvlink6", "nvlink-bridge-h100nvl", "infinity-fabric-v3", "pcie4-x16",
         "pcie5-x16", "pcie6-x16", "infiniband-ndr-400g", "ethernet-400g", "ethernet-800g", "groq-c2c-v1",
         "groq3-c2c", "cerebras-swarmx", "wafer-to-wafer", "gpu-lpu-ethernet-host", "gpu-lpu-direct",
         "gpu-lpu-on-package"]
SYSTEMS = ["hgx-h100", "dgx-h100", "hgx-h200", "hgx-b200", "dgx-b200", "gb200-nvl72", "gb300-nvl72", "vr-nvl72",
           "vera-rubin-nvl72", "groq-node-v1", "groq-rack-v1", "lpx", "groq3-lpx", "nvidia-groq3-lpx", "cs3",
           "cerebras-cs3", "mi300x-8"]


@pytest.fixture(scope="module")
def cat() -> HardwareCatalog:
    return load_catalog()


def _quantities(cat: HardwareCatalog):
    """(where, Quantity) for every Quantity in the catalog."""
    for kind in ("chips", "links", "systems"):
        for name, item in getattr(cat, kind).items():
            for field in type(item).model_fields:
                v = getattr(item, field)
                if isinstance(v, Quantity):
                    yield f"{name}.{field}", v
                elif isinstance(v, dict):
                    for k, q in v.items():
                        yield f"{name}.{field}.{k}", q


def test_load_is_cached():  # its speed is timed by bench/bench_load.py
    a = load_catalog()
    assert load_catalog() is a


@pytest.mark.parametrize("name", CHIPS)
def test_chip_names_resolve(cat, name):
    assert cat.chip(name) is cat.chip(name.upper())


@pytest.mark.parametrize("name", LINKS)
def test_link_names_resolve(cat, name):
    assert cat.link(name).bw_bytes_per_s_per_dir.value > 0


@pytest.mark.parametrize("name", SYSTEMS)
def test_system_names_resolve(cat, name):
    s = cat.resolve_system(name)
    assert s is cat.system(name) and s.n_chips >= 1


def test_calibration_chip_vocabulary_resolves(cat):
    with CALIBRATION_CSV.open(newline="", encoding="utf-8") as f:
        chips = {row["chip"] for row in csv.DictReader(f)}
    assert chips
    for name in chips:
        assert cat.chip(name).kind != "cpu"


# the controlled chip vocabulary of infersim/datasets/calibration/README.md: each must be a canonical name
CALIBRATION_VOCABULARY = ["a100-sxm-80gb", "h100-sxm", "h100-pcie", "h100-nvl", "h200-sxm", "h200-nvl", "gh200", "b200",
                          "gb200", "gb300", "l40s", "rtx-pro-6000", "mi300x", "mi325x", "groq-lpu-v1", "cerebras-wse3"]


@pytest.mark.parametrize("name", CALIBRATION_VOCABULARY)
def test_calibration_vocabulary_is_canonical(cat, name):
    assert cat.chip(name).name == name


def test_every_quantity_is_sourced_and_assumptions_have_ranges(cat):
    for where, q in _quantities(cat):
        assert q.source, where
        if q.value is None:
            assert q.note, where
        if q.basis == "assumption" and q.value is not None:
            assert q.low is not None and q.high is not None, where
            assert q.low <= q.value <= q.high, where


def test_quantity_rejects_assumption_without_range():
    with pytest.raises(ValueError):
        Quantity(value=1.0, basis="assumption", source="x")
    with pytest.raises(ValueError):
        Quantity(value=5.0, basis="estimate", source="x", low=1.0, high=2.0)


def test_precision_support(cat):
    for chip in cat.chips.values():
        assert set(chip.peak_flops) <= set(PRECISIONS)
        if chip.family in ("hopper", "ampere", "groq3", "groq-v1", "ada", "cdna3"):
            assert "fp4" not in chip.peak_flops, chip.name
    assert "fp8" not in cat.chip("a100").peak_flops
    assert cat.chip("lp30").flops("fp8") == pytest.approx(1.23e15)
    assert cat.chip("groq-lpu-v1").peak_flops["fp8"].basis == "assumption"
    with pytest.raises(InputError, match="fp4"):
        cat.chip("h100").flops("fp4")


def test_dense_ratios(cat):
    """Dense fp8 = 2x bf16 on every chip that has both (guards against sparse/dense mixups)."""
    for chip in cat.chips.values():
        pf = chip.peak_flops
        if chip.kind == "gpu" and "fp8" in pf and "bf16" in pf:
            assert pf["fp8"].value / pf["bf16"].value == pytest.approx(2.0, rel=0.1), chip.name


def test_links_reference_existing(cat):
    for chip in cat.chips.values():
        for ref in (chip.scale_up_link, chip.scale_out_link):
            assert ref is None or ref in cat.links
    for s in cat.systems.values():
        assert s.chip in cat.chips
        assert s.scale_up_domain <= s.n_chips


def test_overrides_change_value_and_mark_basis(cat):
    new = cat.with_overrides(["lp30.tdp_w=900", "h100-sxm.peak_flops.fp8=1.5e15", "groq3-lpu.mem_bytes=5.2e8",
                              "lpx.hosts.count=16", "nvlink5.latency_s.high=1e-5"])
    lp = new.chip("groq3-lpu")
    assert lp.tdp_w.value == 900 and lp.tdp_w.basis == "assumption" and lp.tdp_w.source == "user override"
    assert lp.mem_bytes.value == 5.2e8
    assert new.chip("h100").flops("fp8") == 1.5e15
    assert new.system("lpx").hosts.count == 16
    assert new.link("nvlink5").latency_s.high == 1e-5
    # the original catalog is untouched
    assert cat.chip("lp30").tdp_w.value == 500 and cat.chip("h100").flops("fp8") == pytest.approx(1.979e15)
    # overriding a range on top of an override
    q = cat.with_overrides(["lp30.tdp_w=900", "lp30.tdp_w.high=1200"]).chip("lp30").tdp_w
    assert (q.low, q.value, q.high) == (900, 900, 1200)


@pytest.mark.parametrize("bad", ["lp30tdp_w=900", "lp30.tdp_w", "lp30.tdp_w=", "lp30.nope=1", "lp30.tdp_w=abc",
                                 "lp30.peak_flops.fp6=1", "lp30.peak_flops=1", "nosuch.tdp_w=1", "lpx.n_chips=x",
                                 "lpx.scale_up_link=nosuchlink", "lp30.tdp_w.low=600", "lp30.name=x"])
def test_bad_overrides_raise_one_line_input_error(cat, bad):
    with pytest.raises(InputError) as e:
        cat.with_overrides([bad])
    assert "\n" not in str(e.value)


def test_unknown_names_suggest(cat):
    with pytest.raises(InputError, match="h100-sxm"):
        cat.chip("h100-sxn")
    with pytest.raises(InputError, match="nvlink5"):
        cat.link("nvlink-5x")
    with pytest.raises(InputError) as e:
        cat.resolve_system("gb200-nvl7")
    assert "gb200-nvl72" in str(e.value)
    with pytest.raises(InputError, match="h100-sxm"):
        cat.resolve_system("h100-sxn")
    with pytest.raises(InputError):
        cat.system("h100-sxm")  # a chip, not a system


def test_resolve_chip_as_system(cat):
    s = cat.resolve_system("h100-sxm", 4)
    assert (s.chip, s.n_chips, s.scale_up_domain, s.scale_up_link) == ("h100-sxm", 4, 4, "nvlink4")
    one = cat.resolve_system("lp30")
    assert one.n_chips == 1 and one.scale_up_domain == 1
    many = cat.resolve_system("h100", 16)
    assert many.scale_up_domain == 8 and many.scale_out_link == "infiniband-ndr-400g"
    two_lpx = cat.resolve_system("groq3-lpu", 512)  # spans racks over the assumed inter-rack link
    assert two_lpx.scale_up_domain == 256 and two_lpx.scale_out_link == "groq3-inter-rack"
    with pytest.raises(InputError):
        cat.resolve_system("lpx", 512)  # a named system never grows beyond its chips
    with pytest.raises(InputError):
        cat.resolve_system("xeon6-6900p")
    with pytest.raises(InputError):
        cat.resolve_system("h100", 0)


def test_partial_rack(cat):
    s = cat.resolve_system("gb200-nvl72", 4)
    assert s.n_chips == 4 and s.scale_up_domain == 4 and s.chip == "gb200"
    assert s.power_w.value == pytest.approx(120000 * 4 / 72)
    assert cat.system("gb200-nvl72").n_chips == 72  # the catalog entry is untouched
    with pytest.raises(InputError, match="72"):
        cat.resolve_system("gb200-nvl72", 100)


def _total(cat, system: str, field: str, precision: str | None = None) -> float:
    s = cat.system(system)
    chip = cat.chip(s.chip)
    v = chip.flops(precision) if precision else getattr(chip, field).value
    return s.n_chips * v


# (system, per-chip field, precision, published rack figure, relative tolerance, source of the rack figure)
RACK_CHECKS = [
    ("gb200-nvl72", "mem_bytes", None, 13.4e12, 0.05, "aiwiki GB200 NVL72 HBM 13.4 TB"),
    ("gb200-nvl72", "mem_bw_bytes_per_s", None, 576e12, 0.05, "GB200 NVL72 576 TB/s"),
    ("gb200-nvl72", "peak_flops", "fp4", 720e15, 0.05, "GB200 NVL72 720 PF dense FP4"),
    ("gb200-nvl72", "peak_flops", "fp8", 360e15, 0.05, "GB200 NVL72 360 PF dense FP8"),
    ("gb300-nvl72", "mem_bytes", None, 20.7e12, 0.05, "GB300 NVL72 ~20.7 TB HBM"),
    ("gb300-nvl72", "peak_flops", "fp4", 1.1e18, 0.05, "GB300 NVL72 1.1 EF dense FP4"),
    ("vr-nvl72", "mem_bytes", None, 20.7e12, 0.05, "VR NVL72 20.7 TB HBM4"),
    ("vr-nvl72", "peak_flops", "fp8", 1.2e18, 0.05, "VR NVL72 1.2 EF FP8 (GTC 2025)"),
    ("lpx", "mem_bytes", None, 128e9, 0.05, "LPX 128 GB SRAM"),
    ("lpx", "mem_bw_bytes_per_s", None, 40e15, 0.05, "LPX 40 PB/s SRAM bandwidth"),
    ("lpx", "peak_flops", "fp8", 315e15, 0.05, "LPX 315 PF FP8"),
    ("hgx-h100", "mem_bw_bytes_per_s", None, 26.8e12, 0.05, "DGX H100 26.8 TB/s"),
    ("hgx-h100", "peak_flops", "fp8", 15.8e15, 0.05, "DGX H100 15.8 PF dense FP8"),
]


@pytest.mark.parametrize("system,field,precision,published,rel,src", RACK_CHECKS)
def test_sum_of_chips_matches_rack_spec(cat, system, field, precision, published, rel, src):
    assert _total(cat, system, field, precision) == pytest.approx(published, rel=rel), src


@pytest.mark.parametrize("system,link,published", [("gb200-nvl72", "nvlink5", 130e12), ("vr-nvl72", "nvlink6", 260e12),
                                                   ("lpx", "groq3-c2c", 640e12), ("hgx-h100", "nvlink4", 7.2e12)])
def test_scale_up_aggregate_matches_rack_spec(cat, system, link, published):
    s = cat.system(system)
    assert s.scale_up_link == link
    agg = 2 * s.n_chips * cat.link(link).bw_bytes_per_s_per_dir.value  # both directions, all chips
    assert agg == pytest.approx(published, rel=0.05)


def test_host_memory_totals(cat):
    vr = cat.system("vr-nvl72")
    assert vr.hosts.count * cat.chip(vr.hosts.cpu).mem_bytes.value == pytest.approx(54e12, rel=0.05)
    gb = cat.system("gb200-nvl72")
    assert gb.hosts.count * cat.chip(gb.hosts.cpu).mem_bytes.value == pytest.approx(17.3e12, rel=0.05)


def test_user_yaml_adds_and_replaces(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("""
chips:
  - name: lp35
    aliases: [groq-lp35]
    kind: lpu
    family: groq3
    vendor: NVIDIA/Groq
    description: what-if LP35 with NVFP4
    memory_kind: sram
    mem_bytes: {value: 5e8, basis: assumption, source: me, low: 5e8, high: 1e9}
    mem_bw_bytes_per_s: {value: 1.5e14, basis: assumption, source: me, low: 1e14, high: 2e14}
    peak_flops:
      fp4: {value: 2.5e15, basis: assumption, source: me, low: 1.2e15, high: 5e15}
    tdp_w: {value: 600, basis: assumption, source: me, low: 300, high: 900}
    scale_up_link: groq3-c2c
    scale_up_domain: 256
links:
  - name: nvlink5
    description: slower nvlink5
    kind: nvlink
    bw_bytes_per_s_per_dir: {value: 8e11, basis: measurement, source: me}
    latency_s: {value: 3e-6, basis: measurement, source: me}
""")
    cat = load_catalog([f])
    assert cat.chip("groq-lp35").flops("fp4") == 2.5e15
    assert cat.link("nvlink5").bw_bytes_per_s_per_dir.value == 8e11
    assert load_catalog().link("nvlink5").bw_bytes_per_s_per_dir.value == 9e11  # cache not polluted


@pytest.mark.parametrize("text,match", [
    ("chips: [\n  {name: x", "malformed YAML"),
    ("gpus: []", "chips, links, systems"),
    ("chips:\n  - {name: zz, kind: gpu}", "field"),
    ("links:\n  - name: l1\n    description: d\n    kind: nvlink\n"
     "    bw_bytes_per_s_per_dir: {value: 1e9, basis: guess, source: me}\n"
     "    latency_s: {value: 1e-6, basis: spec, source: me}", "bw_bytes_per_s_per_dir"),
    ("systems:\n  - {name: s1, description: d, chip: nochip, n_chips: 2, scale_up_link: null, scale_up_domain: 1}",
     "nochip"),
    ("chips:\n  - {name: h100, kind: cpu}", "field"),
])
def test_bad_user_yaml_names_file_and_field(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(InputError, match=match) as e:
        load_catalog([f])
    assert "bad.yaml" in str(e.value) and "\n" not in str(e.value)


def test_references_by_alias_become_canonical(tmp_path):
    f = tmp_path / "rack.yaml"
    f.write_text("systems:\n  - {name: my-rack, description: d, chip: H100, n_chips: 16, scale_up_link: NVLink-4, "
                 "scale_up_domain: 8, scale_out_link: ib-ndr}")
    s = load_catalog([f]).resolve_system("my-rack", 8)
    assert (s.chip, s.scale_up_link, s.scale_out_link, s.n_chips) == ("h100-sxm", "nvlink4", "infiniband-ndr-400g", 8)


def test_duplicate_alias_rejected(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("systems:\n  - {name: my-rack, aliases: [H100], description: d, chip: h100-sxm, n_chips: 8, "
                 "scale_up_link: nvlink4, scale_up_domain: 8}")
    with pytest.raises(InputError, match="h100|H100"):
        load_catalog([f])
