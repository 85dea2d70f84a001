"""`python -m ms_meta` runs the command-line interface."""

from ms_meta.cli.main import cli

if __name__ == "__main__":
    cli()
