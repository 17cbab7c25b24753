"""Sweeps: a grid of deployments x models x loads, each configuration evaluated once into the
DuckDB table `results`, keyed by a stable `config_id` and resumable after a kill.

- `spec.py`: the sweep file (pydantic-validated YAML) and its expansion into `SweepConfig`s;
- `evaluate.py`: the evaluation function a worker runs on one configuration (for now `estimate`
  of the deployment at the load);
- `store.py`: the `results` table (schema documented there), opened, checked and written in
  transactions with idempotent inserts;
- `runner.py`: the driver: skips what the table already holds, evaluates the rest in a local
  process pool (or serially), buffers rows and commits them;
- `ray_runner.py`: the same over Ray tasks (the optional extra `infersim[ray]`).
"""
