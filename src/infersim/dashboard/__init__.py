"""`infersim serve RESULTS.duckdb`: a local dashboard over one results file (issue 12).

state.py reads the file once, read-only (reports.data), and turns a selection (model, workload,
SLOs, families) into the report's FigureSpecs and their plotly figures; actions.py runs an
`estimate` or a small `frontier` on demand, never writing the user's file; app.py is the
Starlette app (JSON API, the page and a fixed list of static files); cli/serve_cmd.py binds the
socket and runs uvicorn.
"""
