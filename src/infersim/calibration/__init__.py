"""Calibration: the per-chip-family efficiency parameters (defaults.json, fit.json) and their loader."""
