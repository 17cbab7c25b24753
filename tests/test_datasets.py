"""The data shipped in the package: complete against its manifest, equal to what upstream publishes
where upstream quotes a hash, found by name from any working directory, and refreshable from a
shared folder by scripts/refresh_datasets.py."""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest

from infersim import datasets
from infersim.errors import InputError
from infersim.workload.traces import read_trace

REPO = Path(__file__).resolve().parents[1]
MIRRORED = ("calibration", "traces")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest() -> dict[str, str]:
    entries = {}
    for line in datasets.MANIFEST.read_text().splitlines():
        digest, rel = line.split("  ", 1)
        entries[rel] = digest
    return entries


def _shipped_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for sub in MIRRORED for p in (root / sub).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_every_shipped_file_is_in_the_manifest_with_its_hash():
    listed = _manifest()
    assert set(listed) == _shipped_files(datasets.ROOT)  # nothing missing (partial copy), nothing unlisted
    for rel, digest in listed.items():
        assert _sha256(datasets.ROOT / rel) == digest, f"{rel} differs from MANIFEST.sha256"


def test_traces_match_the_hashes_upstream_quotes():
    # prefixes of the sha256 quoted in traces/README.md (Azure repository files, energy2's recorded hash)
    quoted = {"AzureLLMInferenceTrace_code.csv": "54e9a6d2a4bd06ba", "AzureLLMInferenceTrace_conv.csv": "2f1e5b666d4e3055",
              "exgentic_swebench_claude_code_shard12.jsonl": "a63d93df"}
    for name, prefix in quoted.items():
        assert _sha256(datasets.trace(name)).startswith(prefix), name


def test_accessors_point_inside_the_package():
    assert datasets.measurements_csv().is_file()
    assert datasets.measurements_csv().is_relative_to(Path(datasets.__file__).parent)
    assert datasets.trace_names() == ["AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_conv.csv",
                                      "burstgpt_1_head54.csv", "exgentic_swebench_claude_code_shard12.jsonl",
                                      "mooncake_conversation_trace.jsonl", "mooncake_synthetic_trace.jsonl",
                                      "semianalysis_cc_traces_claude_code_sample5000.jsonl",
                                      "tracelab_example_round_trace.jsonl"]
    for sub in (".", *MIRRORED):
        assert (datasets.ROOT / sub / "README.md").is_file(), sub  # origin and licence travel with the data


def test_display_path_hides_the_install_location():
    assert datasets.display_path(datasets.measurements_csv()) == "src/infersim/datasets/calibration/measurements.csv"
    assert datasets.display_path("my/rows.csv") == "my/rows.csv"


# ----------------------------------------------------------------------------- trace names

def test_bare_trace_name_reads_the_shipped_trace_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = read_trace("burstgpt_1_head54.csv")
    assert len(r) == 51 and r.source == "burstgpt_1_head54.csv"  # 54 rows, 3 failures dropped (README)


def test_a_local_file_wins_over_the_shipped_trace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "burstgpt_1_head54.csv").write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,100,20,120,Conversation log\n")
    r = read_trace("burstgpt_1_head54.csv")
    assert len(r) == 1 and r.input_tokens.tolist() == [100]


def test_a_missing_trace_lists_the_shipped_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="not found.*AzureLLMInferenceTrace_conv.csv"):
        read_trace("no_such_trace.csv")
    # a path with a folder names a local file only: never silently swapped for the shipped copy
    with pytest.raises(InputError, match="not found"):
        read_trace(Path("elsewhere") / "burstgpt_1_head54.csv")


# ----------------------------------------------------------------------------- refresh script

def _refresh_module():
    spec = importlib.util.spec_from_file_location("refresh_datasets", REPO / "scripts" / "refresh_datasets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_shared(tmp_path: Path) -> Path:
    """A shared folder holding the shipped copies (the refresh script's input layout)."""
    shared = tmp_path / "shared"
    for sub in MIRRORED:
        shutil.copytree(datasets.ROOT / sub, shared / sub)
    return shared


def test_refresh_check_is_clean_against_an_identical_shared_folder(tmp_path, capsys):
    refresh = _refresh_module()
    assert refresh.main([str(_fake_shared(tmp_path)), "--check"]) == 0
    assert capsys.readouterr().out == ""


def test_refresh_copies_changes_and_rewrites_the_manifest(tmp_path, capsys):
    refresh = _refresh_module()
    shared = _fake_shared(tmp_path)
    target = tmp_path / "datasets"
    models = tmp_path / "models"
    for sub in MIRRORED:
        shutil.copytree(datasets.ROOT / sub, target / sub)
    shutil.copyfile(datasets.MANIFEST, target / datasets.MANIFEST.name)
    (shared / "traces" / "new_trace.csv").write_text("Timestamp,Request tokens,Response tokens\n0,1,1\n")
    (shared / "calibration" / "measurements.csv").write_text("changed\n")
    (target / "traces" / "stale.csv").write_text("gone upstream\n")
    (shared / "reference" / "configs" / "org__m").mkdir(parents=True)
    (shared / "reference" / "configs" / "org__m" / "config.json").write_text("{}\n")
    args = [str(shared), "--datasets-dir", str(target), "--models-dir", str(models)]
    assert refresh.main([*args, "--check"]) == 1
    checked = capsys.readouterr().out
    assert "add" in checked and "update" in checked and "remove" in checked
    assert not (target / "traces" / "new_trace.csv").exists()  # --check writes nothing
    assert refresh.main(args) == 0
    assert (target / "traces" / "new_trace.csv").read_bytes() == (shared / "traces" / "new_trace.csv").read_bytes()
    assert (target / "calibration" / "measurements.csv").read_text() == "changed\n"
    assert not (target / "traces" / "stale.csv").exists()
    assert (models / "org__m" / "config.json").read_text() == "{}\n"
    assert "models.yaml" in capsys.readouterr().out  # a new model needs a catalog entry
    manifest = (target / datasets.MANIFEST.name).read_text()
    assert f"{_sha256(shared / 'traces' / 'new_trace.csv')}  traces/new_trace.csv\n" in manifest
    assert "stale.csv" not in manifest
    assert refresh.main([*args, "--check"]) == 0


def test_refresh_refuses_a_folder_without_the_data(tmp_path, capsys):
    assert _refresh_module().main([str(tmp_path)]) == 2
    assert "calibration, traces" in capsys.readouterr().err
