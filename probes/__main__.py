"""`python -m probes …` is the same as the `probes` command."""

from probes.cli.app import main

main()
