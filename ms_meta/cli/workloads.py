"""``ms-meta workloads``: list operators (with their spec fields), presets and named tasks."""

from __future__ import annotations

import click

__all__ = ["workloads"]


@click.command()
@click.option("--preset", default=None, help="Only list the layers of this preset.")
def workloads(preset):
    """List the workload library: operator specs, model presets and named tasks."""
    from ms_meta.workloads import NAMED, PRESETS, describe_operators, resolve

    if preset:
        for w in resolve([preset]):
            click.echo(f"{w.name}\t{w.spec}\t{w.flops / 1e9:.3f} GFLOP")
        return
    click.echo("Operators (spec = OP:FIELDS):")
    for _, fields, description in describe_operators():
        click.echo(f"  {fields:42s} {description}")
    click.echo("\nPresets:")
    for name, specs in PRESETS.items():
        click.echo(f"  {name:12s} {len(specs)} tasks")
    click.echo("\nNamed tasks:")
    for name, spec in NAMED.items():
        click.echo(f"  {name:18s} {spec}")
