"""Refresh the data shipped in the package from a copy of the project's shared folder.

    python3 scripts/refresh_datasets.py SHARED_DIR            # copy, then rewrite the manifest
    python3 scripts/refresh_datasets.py SHARED_DIR --check    # only list differences (exit 1 if any)

What is copied (byte for byte, never linked: a user's clone has no shared folder beside it):
- SHARED_DIR/calibration/** -> src/infersim/datasets/calibration/** (measurements, InferenceX, MLPerf lengths)
- SHARED_DIR/traces/**      -> src/infersim/datasets/traces/**
- SHARED_DIR/reference/configs/<repo>/config.json -> src/infersim/catalog/data/models/<repo>/config.json
  (a new folder also needs an entry in catalog/data/models/models.yaml; the script says so)

The two dataset folders mirror the shared ones (a file gone upstream is removed here). Afterwards
src/infersim/datasets/MANIFEST.sha256 lists the sha256 of every file in them, and
tests/test_datasets.py fails if a shipped file is missing, extra or changed without the manifest.
Check a new file's licence and add it to src/infersim/datasets/README.md before committing.
"""
from __future__ import annotations

import argparse
import filecmp
import hashlib
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO / "src" / "infersim" / "datasets"
MODELS = REPO / "src" / "infersim" / "catalog" / "data" / "models"
MIRRORED = ("calibration", "traces")  # sub-folders of both SHARED_DIR and the datasets folder
MANIFEST_NAME = "MANIFEST.sha256"


def _files(root: Path) -> dict[str, Path]:
    """Regular files under root by POSIX path relative to root (hidden files and caches skipped)."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") or part == "__pycache__"
                                       for part in p.relative_to(root).parts)}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_text(datasets: Path) -> str:
    """`sha256sum -c` format: '<hex>  <path relative to the datasets folder>', sorted by path."""
    lines = [f"{sha256(p)}  {sub}/{rel}" for sub in MIRRORED for rel, p in _files(datasets / sub).items()]
    return "".join(line + "\n" for line in sorted(lines, key=lambda s: s.split("  ", 1)[1]))


def plan(shared: Path, datasets: Path, models: Path) -> list[tuple[str, Path | None, Path]]:
    """(action, source, destination) for every file that differs: 'add', 'update' or 'remove'."""
    todo: list[tuple[str, Path | None, Path]] = []
    for sub in MIRRORED:
        src, dst = _files(shared / sub), _files(datasets / sub)
        for rel, p in src.items():
            if rel not in dst:
                todo.append(("add", p, datasets / sub / rel))
            elif not filecmp.cmp(p, dst[rel], shallow=False):
                todo.append(("update", p, dst[rel]))
        todo += [("remove", None, dst[rel]) for rel in dst if rel not in src]
    configs = shared / "reference" / "configs"
    for p in sorted(configs.glob("*/config.json")) if configs.is_dir() else []:
        target = models / p.parent.name / "config.json"
        if not target.exists():
            todo.append(("add", p, target))
        elif not filecmp.cmp(p, target, shallow=False):
            todo.append(("update", p, target))
    return todo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shared", type=Path, help="the shared folder (holds calibration/, traces/, reference/configs/)")
    ap.add_argument("--check", action="store_true", help="list differences only; exit 1 if there are any")
    ap.add_argument("--datasets-dir", type=Path, default=DATASETS, help=argparse.SUPPRESS)  # for tests
    ap.add_argument("--models-dir", type=Path, default=MODELS, help=argparse.SUPPRESS)  # for tests
    a = ap.parse_args(argv)
    missing = [sub for sub in MIRRORED if not (a.shared / sub).is_dir()]
    if missing:
        print(f"error: {a.shared} has no {', '.join(missing)} folder; give the shared folder itself", file=sys.stderr)
        return 2
    todo = plan(a.shared, a.datasets_dir, a.models_dir)
    manifest = a.datasets_dir / MANIFEST_NAME
    stale_manifest = not manifest.is_file() or manifest.read_text() != manifest_text(a.datasets_dir)
    for action, _, dst in todo:
        print(f"{action:6s} {dst}")
    if a.check:
        if stale_manifest and not todo:
            print(f"stale  {manifest}")
        return 1 if todo or stale_manifest else 0
    for action, src, dst in todo:
        if action == "remove":
            dst.unlink()
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        if dst.parent.parent == a.models_dir and action == "add":
            print(f"note: new model config {dst.parent.name}: add an entry to {a.models_dir / 'models.yaml'}")
    manifest.write_text(manifest_text(a.datasets_dir))
    print(f"{len(todo)} file(s) changed; wrote {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
