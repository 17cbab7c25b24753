"""Deployment files: one YAML format for every serving mode, built into plans the cost model and simulator run."""
