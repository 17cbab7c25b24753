"""Reports people read: figures as data (spec.py) built from a results file (data.py,
figures/), drawn as one self-contained interactive HTML file (render_plotly) or PNGs
(render_png). `infersim report` (cli/report_cmd.py) and the dashboard use the same FigureSpecs."""
