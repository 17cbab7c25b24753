"""`python -m infersim ...` runs the command line (same as the `infersim` script)."""
from infersim.cli.main import app

app()
