"""The ``ms-meta`` command group; each sub-command lives in its own module."""

from __future__ import annotations

import importlib
import logging

import click

from ms_meta import __version__

__all__ = ["LazyGroup", "cli"]

# name -> "module:attribute"; imported only when the command runs, so `ms-meta --help` stays fast
# and does not import TVM.
_COMMANDS = {
    "tune": ("ms_meta.cli.tune:tune", "Tune a workload and print its latency."),
    "adapt": ("ms_meta.cli.adapt:adapt", "Adapt shipped weights to a new CPU from its records."),
    "bench": ("ms_meta.cli.bench:bench", "Benchmark extraction, prediction and tuning."),
    "collect": ("ms_meta.cli.collect:collect", "Measure schedules into tuning_records/."),
    "db": ("ms_meta.cli.db:db", "Inspect, merge, validate and split tuning databases."),
    "workloads": ("ms_meta.cli.workloads:workloads", "List workloads, operators and presets."),
    "pretrain": ("ms_meta.cli.pretrain:pretrain", "Meta-train the GNN cost model on records."),
    "library": ("ms_meta.cli.library:library", "Build and inspect One-Shot schedule libraries."),
    "store": ("ms_meta.cli.store:store", "Import, export and inspect the record store."),
    "eval": (
        "ms_meta.cli.eval:eval_command",
        "Rank held-out tasks zero- and k-shot vs TVM's models.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        target, _ = _COMMANDS[cmd_name]
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # the command is not part of this build yet
                return None
            raise
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help without importing every command module.
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ms-meta")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """ms-meta: a meta-learned cost model for TVM MetaSchedule.

    \b
    Examples:
      ms-meta tune dense:128,768,768 --trials 32
      ms-meta tune conv2d_nchw:1,64,56,56,64,3,3,1,1 --mode one-shot
      ms-meta db stats tuning_records/
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
