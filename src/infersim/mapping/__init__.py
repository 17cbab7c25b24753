"""Mapping a model onto hardware: precision plans, parallel layouts and the deployments the cost model times."""
