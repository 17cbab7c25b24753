"""The validation figure's data: a snapshot of the last full `infersim validate --json` (both sets:
the measurement CSV and the InferenceX points, the default `simulate` method), trimmed to what the
figure draws and shipped with the package, because the full run takes minutes (~6 min on 2 cores)
and a report takes seconds. The snapshot records the command, the code version and the date; the
report's caption repeats them, so a reader can reproduce it:

    infersim validate --json > validate.json
    python -m infersim.reports.validation_snapshot validate.json   # rewrites the shipped snapshot
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "validation_snapshot.json"
COMMAND = "infersim validate --json"
KEEP = ("set", "id", "metric", "measured", "predicted", "error")


def trim(doc: dict, code_version: str, taken_at: str) -> dict:
    """The figure's fields of a `validate --json` document: per row its set, id, hardware (the
    measurement's chip, the InferenceX point's hardware), chip kind, interactivity band (InferenceX
    points only), metric, measured, predicted and signed relative error."""
    rows = []
    for r in doc.get("rows", []):
        row = {k: r.get(k) for k in KEEP}
        row["hardware"] = r.get("hardware") or r.get("chip")
        row["kind"] = r.get("kind")
        row["band"] = r.get("band")
        rows.append(row)
    return {"command": COMMAND, "code_version": code_version, "taken_at": taken_at,
            "calibration": doc.get("calibration"), "rows": rows}


def _short(v):
    """Floats to 6 significant digits: the figure draws percent errors, not the 16th digit."""
    return float(f"{v:.6g}") if isinstance(v, float) else v


def dumps(snap: dict) -> str:
    """The snapshot as JSON, one row per line (small, and diffs show which rows moved)."""
    head = {k: v for k, v in snap.items() if k != "rows"}
    rows = ",\n".join(json.dumps({k: _short(v) for k, v in r.items()}, sort_keys=True) for r in snap["rows"])
    return json.dumps(head, sort_keys=True)[:-1] + ', "rows": [\n' + rows + "\n]}\n"


def load_snapshot(path: Path = SNAPSHOT) -> dict | None:
    """The shipped snapshot, or None when there is none."""
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m infersim.reports.validation_snapshot VALIDATE.json [CODE_VERSION of the validate run; "
              "default: this checkout's]", file=sys.stderr)
        return 2
    from infersim.sweep.store import code_version
    doc = json.loads(Path(argv[0]).read_text())
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    SNAPSHOT.write_text(dumps(trim(doc, argv[1] if len(argv) == 2 else code_version(), now)))
    print(f"wrote {SNAPSHOT} ({len(doc.get('rows', []))} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
