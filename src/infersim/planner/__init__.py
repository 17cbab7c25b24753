"""The planner: deployments compared across families and load (`frontier`), above the sweep's
evaluation and economics, below the CLI.

- `families.py`: the deployment families enumerated for one model;
- `pareto.py`: Pareto frontiers;
- `verdict.py`: the winner per interactivity band, its margin and what moves it;
- `frontier.py`: the screen (`run_frontier`) and its JSON (`to_json`);
- `plan.py` (`run_plan`): the best deployment for a workload under SLOs, a budget and an objective,
  with `candidates.py` (enumeration, sizing), `budget.py`, `bounds.py` (prune checks),
  `plan_workload.py` and `plan_report.py` (ranking, reasons, JSON).
- `confirm.py`: with a trace, the frontier points replayed through the simulator.
- `screen.py` (+ `screen_floor.py`): bounds for a whole (plan x batch x input x output) grid at once,
  the prune step before estimating or simulating.
"""
