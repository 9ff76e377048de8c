"""The `probes` command line (thin typer app)."""
