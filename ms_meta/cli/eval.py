"""``ms-meta eval``: rank held-out tasks zero-shot and k-shot, side by side with TVM's models."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import click

from ms_meta.atomic import atomic_write_text
from ms_meta.cli.options import (
    DIR_PATH,
    FILE_PATH,
    any_cpu_weights_option,
    default_record_paths,
    find_split,
    library_errors,
    load_parts,
    records_argument,
    records_target,
    seed_option,
    shots_option,
    split_option,
)
from ms_meta.eval.protocol import ORDERS

__all__ = ["BASELINES", "eval_command", "gnn_scorer", "print_evaluation"]

BASELINES = ("xgb-stock", "xgb-kshot", "xgb-pretrained", "mlp-pretrained")


def gnn_scorer(
    path: Path,
    name: str | None = None,
    *,
    target: dict | None = None,
    allow_other_cpu: bool = False,
):
    """An :class:`~ms_meta.model.meta.AdaptingScorer` for a weights file, adapting with the
    inner loop the weights were trained with (as MetaCostModel does).

    With ``target`` (the records' target), weights trained for another CPU are refused unless
    ``allow_other_cpu`` (then a note says so), as :class:`~ms_meta.MetaCostModel` does.
    """
    from ms_meta.labels import cpu_label
    from ms_meta.model.meta import AdaptConfig, AdaptingScorer
    from ms_meta.model.train import init_model
    from ms_meta.model.weights import check_target, load_checkpoint

    checkpoint = load_checkpoint(path)
    if target is not None:
        other_cpu = check_target(
            checkpoint.target, target, f"weights {path}", allow_other_cpu=allow_other_cpu
        )
        if other_cpu is not None:
            click.echo(
                f"note: weights {path} were trained for {other_cpu}, the records are of "
                f"{cpu_label(target)} (--any-cpu-weights)",
                err=True,
            )
    model = init_model(checkpoint.gnn_config)
    model.load_state_dict(checkpoint.state_dict)
    model.eval()
    trained = checkpoint.meta.get("adapt", {})
    pretrain_config = checkpoint.meta.get("pretrain_config", {})
    config = AdaptConfig(
        steps=int(trained.get("steps", 10)),
        lr=float(trained.get("lr", 3e-3)),
        regression_weight=float(pretrain_config.get("regression_weight", 0.5)),
    )
    label = name or f"gnn-{checkpoint.meta.get('method', 'weights')}"
    return AdaptingScorer(label, model, config)


def _parse_weights(items: Sequence[str]) -> list[tuple[str | None, Path]]:
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        out.append((name, Path(path)) if sep else (None, Path(item)))
    return out


def print_evaluation(
    weights: Path | Sequence[tuple[str | None, Path]],
    held_out,
    *,
    train_tasks=None,
    baselines: Sequence[str] = (),
    xgb_pretrained: Path | None = None,
    baseline_dir: Path | None = None,
    ks: Sequence[int] = (0, 8, 16, 32),
    seed: int = 0,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
    after_line: int = 0,
    order: str = "random",
    target: dict | None = None,
    allow_other_cpu: bool = False,
):
    """Evaluate weights files and baselines on ``held_out`` tasks; print one table.

    ``after_line`` and ``order`` select the records and their order (see
    :func:`ms_meta.eval.make_episodes`); ``target`` and ``allow_other_cpu`` check the weights
    against the records' CPU (:func:`gnn_scorer`)."""
    from ms_meta.eval import evaluate, make_episodes, markdown_table, results_to_json, text_table

    # Before any model is loaded or baseline pretrained: is there anything to evaluate?
    episodes, skipped = make_episodes(held_out, ks, seed, after_line=after_line, order=order)
    if not episodes:
        first = next(iter(skipped.items()), ("", "no tasks"))
        raise click.ClickException(
            f"no held-out task has enough records to evaluate (e.g. {first[0]}: {first[1]})"
        )
    if isinstance(weights, Path):
        weights = [(None, weights)]
    scorers = [
        gnn_scorer(path, name, target=target, allow_other_cpu=allow_other_cpu)
        for name, path in weights
    ]
    if baselines:
        scorers += _baseline_scorers(baselines, train_tasks, xgb_pretrained, baseline_dir, seed)
    results = []
    for scorer in scorers:
        started = time.perf_counter()
        results.append(
            evaluate(scorer, held_out, ks=ks, seed=seed, after_line=after_line, order=order)
        )
        click.echo(f"evaluated {scorer.name} in {time.perf_counter() - started:.0f}s", err=True)
    records = f"records after line {after_line}" if after_line else "records"
    sequence = (
        "in record-file (search) order" if order == "search" else "in a fixed per-task permutation"
    )
    click.echo(
        f"\nheld-out measurement groups: {len(held_out)} (a task's own records and each "
        f"source ingested into it); each group's {records} {sequence}; "
        f"query = those after the first {max(ks)}; k-shot support = the first k"
    )
    if results and results[0].skipped:
        counts = results[0].skip_counts()
        click.echo("skipped tasks: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    click.echo(text_table(results))
    if json_path is not None:
        atomic_write_text(json_path, results_to_json(results) + "\n")
        click.echo(f"wrote {json_path}")
    if markdown_path is not None:
        atomic_write_text(markdown_path, markdown_table(results) + "\n")
        click.echo(f"wrote {markdown_path}")
    return results


def _baseline_scorers(names, train_tasks, xgb_pretrained, baseline_dir, seed):
    from ms_meta.eval.baselines import (
        MLPPretrained,
        PerStoreFeatures,
        XGBFewShot,
        XGBPretrained,
        pretrain_mlp,
        pretrain_xgb,
    )

    features = PerStoreFeatures()
    out = []
    for name in names:
        if name == "xgb-stock":
            out.append(XGBFewShot.stock(features, seed=seed))
        elif name == "xgb-kshot":
            out.append(XGBFewShot.kshot(features, seed=seed))
        elif name == "xgb-pretrained":
            path = xgb_pretrained
            if path is None:
                if not train_tasks:
                    raise click.UsageError(
                        "xgb-pretrained needs training tasks or --xgb-pretrained"
                    )
                path = (baseline_dir or Path(".")) / "xgb_pretrained.tar"
                click.echo(f"pretraining XGBModel on {len(train_tasks)} tasks -> {path}", err=True)
                pretrain_xgb(train_tasks, path, features=features, seed=seed)
            out.append(XGBPretrained.load(path, features, seed=seed))
        elif name == "mlp-pretrained":
            path = (baseline_dir or Path(".")) / "mlp_pretrained.tar"
            if path.is_file():
                out.append(MLPPretrained.load(path, features, seed=seed))
            else:
                if not train_tasks:
                    raise click.UsageError("mlp-pretrained needs training tasks")
                click.echo(f"pretraining MLPModel on {len(train_tasks)} tasks -> {path}", err=True)
                out.append(pretrain_mlp(train_tasks, features=features, seed=seed, path=path))
        else:
            raise click.BadParameter(
                f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}"
            )
    return out


@click.command(
    epilog="""\b
Examples:
  ms-meta eval tuning_records/llvm-rocketlake-2c --weights meta=fomaml.pt --weights t=transfer.pt
  ms-meta eval tuning_records/llvm-rocketlake-2c --weights fomaml.pt --json eval.json
  ms-meta eval my_records/ --split split.json --weights fomaml.pt --baselines none --ks 0,16
  ms-meta eval tuning_records/llvm-znver4-noavx512-2c --split val.json --weights w.pt \\
      --after-line 64 --order search     # the guided records that follow a 64-trial search
"""
)
@records_argument
@split_option
@click.option(
    "--weights",
    "weights",
    multiple=True,
    metavar="[NAME=]PATH",
    help="GNN weights to evaluate (repeatable); default: the shipped weights. Weights "
    "trained for another CPU than the records' need --any-cpu-weights.",
)
@any_cpu_weights_option
@click.option(
    "--baselines",
    default="all",
    show_default=True,
    help=f"Comma-separated competitors ({', '.join(BASELINES)}), 'all' or 'none'.",
)
@click.option(
    "--xgb-pretrained",
    type=FILE_PATH,
    default=None,
    help="A pretrained XGBModel file (else one is pretrained on the training tasks).",
)
@click.option(
    "--baseline-dir",
    type=DIR_PATH,
    default=Path("eval_baselines"),
    show_default=True,
    help="Where pretrained baselines are written and re-used.",
)
@shots_option("0,8,16,32", help="Shots, comma-separated (0 = zero-shot).")
@click.option(
    "--json",
    "json_path",
    type=FILE_PATH,
    default=None,
    help="Also write the results as JSON.",
)
@click.option(
    "--markdown",
    "markdown_path",
    type=FILE_PATH,
    default=None,
    help="Also write a Markdown table.",
)
@click.option(
    "--after-line",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Use only the records after this line of each task's record file (e.g. 64: the "
    "guided records that follow a 64-trial stock search).",
)
@click.option(
    "--order",
    type=click.Choice(ORDERS),
    default="random",
    show_default=True,
    help="Support and query from a seeded permutation of each task's records, or in "
    "record-file order ('search': the support is the first k records a search measured).",
)
@seed_option
@library_errors
def eval_command(
    paths,
    split_path,
    weights,
    any_cpu_weights,
    baselines,
    xgb_pretrained,
    baseline_dir,
    ks,
    json_path,
    markdown_path,
    after_line,
    order,
    seed,
):
    """Evaluate cost models on the held-out tasks of a split, zero-shot and k-shot.

    Metrics on each task's query records: pairwise ranking accuracy, top-1 and top-5 score
    (TenSet: best latency / latency of the model's pick), Kendall tau; macro-averaged.
    """
    import torch

    from ms_meta.labels import target_label
    from ms_meta.model.weights import default_weights_path
    from ms_meta.tuning.target import host_target, target_summary

    torch.set_num_threads(1)
    names = (
        []
        if baselines == "none"
        else list(BASELINES)
        if baselines == "all"
        else [b.strip() for b in baselines.split(",") if b.strip()]
    )
    unknown = [b for b in names if b not in BASELINES]
    if unknown:
        raise click.BadParameter(
            f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}"
        )
    paths = list(paths) or default_record_paths()
    split_file = find_split(paths, split_path)
    if split_file is None:
        raise click.UsageError("evaluation needs a split with held-out tasks (--split)")
    dataset, parts, _ = load_parts(paths, split_file)
    held_out = parts["held_out"].tasks
    if not held_out:
        raise click.ClickException("the split's held-out tasks have no records here")
    target = records_target(dataset)
    parsed = _parse_weights(weights)
    if not parsed:  # the shipped weights of the records' CPU (else of this machine's)
        for_target = target or target_summary(host_target())
        default = default_weights_path(for_target)
        if default is None:
            raise click.UsageError(
                f"no --weights given and this build ships no weights for {target_label(for_target)}"
            )
        parsed = [("meta-default", default)]
    baseline_dir.mkdir(parents=True, exist_ok=True)
    print_evaluation(
        parsed,
        held_out,
        train_tasks=parts["train"].tasks,
        baselines=names,
        xgb_pretrained=xgb_pretrained,
        baseline_dir=baseline_dir,
        ks=ks,
        seed=seed,
        json_path=json_path,
        markdown_path=markdown_path,
        after_line=after_line,
        order=order,
        target=target,
        allow_other_cpu=any_cpu_weights,
    )
