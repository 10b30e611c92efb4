"""``evaluate``: sample a sync's answers to label, then score them against the labels (docs/evaluate.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sixtyfour_sync.cli.flags import _say
from sixtyfour_sync.cli_options import GlobalOptions, global_options
from sixtyfour_sync.errors import ConfigError


def _tolerance(values: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in values:
        name, sep, number = item.partition("=")
        try:
            value = float(number)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or value < 0:
            raise click.BadParameter(f"{item!r}: give FIELD=RELATIVE, e.g. revenue=0.05", param_hint="--tolerance")
        out[name.strip()] = value
    return out


@click.command()
@global_options
@click.argument("sync")
@click.option(
    "--sample",
    "sample_rows",
    type=click.IntRange(min=1),
    default=None,
    help="Write a stratified sample of N enriched rows (by tier and confidence band) to label, to -o.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where --sample writes its CSV (replaced atomically).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Which rows --sample picks (same seed, same rows)."
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A CSV of the key and any struct fields holding the right values (the filled sample works as is).",
)
@click.option("--labels-table", default=None, metavar="SCHEMA.TABLE", help="The labels as a warehouse table.")
@click.option(
    "--target-precision",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    default=None,
    help="Suggest per field the lowest min_confidence whose labelled answers reach this precision (e.g. 0.9).",
)
@click.option(
    "--tolerance",
    "tolerances",
    multiple=True,
    metavar="FIELD=REL",
    help="A number field's relative tolerance (default: exact for int, 0.01 for float); repeatable.",
)
@click.option("--no-record", is_flag=True, help="Do not keep the scores in the ledger (report shows kept ones).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
@click.pass_obj
def evaluate(
    opts: GlobalOptions,
    sync: str,
    sample_rows: int | None,
    out: Path | None,
    seed: int,
    labels: Path | None,
    labels_table: str | None,
    target_precision: float | None,
    tolerances: tuple[str, ...],
    no_record: bool,
    as_json: bool,
) -> None:
    """Measure how right a sync's answers are: sample rows to label, then score them against the labels.

    `evaluate SYNC --sample 100 -o sample.csv` writes rows to label; fill the empty field columns with the
    right values, then `evaluate SYNC --labels sample.csv --target-precision 0.9` prints correct, wrong and
    missing answers, accuracy, precision and coverage per field, tier and confidence band, and the
    min_confidence per field that reaches the precision.
    """
    from sixtyfour_sync.commands.evaluating import evaluate as do_evaluate
    from sixtyfour_sync.commands.evaluating import sample as do_sample
    from sixtyfour_sync.evaluate.normalise import Tolerances

    scoring = labels is not None or labels_table is not None
    if sample_rows is None and not scoring:
        raise ConfigError("say what to do: --sample N -o FILE, or --labels FILE / --labels-table SCHEMA.TABLE")
    if sample_rows is not None and scoring:
        raise ConfigError("--sample and --labels are separate steps: sample, label, then evaluate")
    if sample_rows is not None:
        if out is None:
            raise ConfigError("--sample needs -o FILE: where to write the rows to label")
        result = do_sample(sync=sync, n=sample_rows, out=out, seed=seed, **opts.common())
        if as_json:
            click.echo(json.dumps({"event": "evaluate.sample", **result.to_dict()}))
            return
        _say(
            opts,
            "evaluate.sample",
            f"wrote {result.rows} row(s) of {result.enriched:,} enriched to {result.path}: fill the empty field "
            f"columns, then `sixtyfour-sync evaluate {sync} --labels {result.path}`",
            **result.to_dict(),
        )
        return
    scores = do_evaluate(
        sync=sync,
        labels=labels,
        labels_table=labels_table,
        target_precision=target_precision,
        tolerances=Tolerances(by_field=_tolerance(tolerances)),
        record=not no_record,
        **opts.common(),
    )
    from sixtyfour_sync.ui.evaluation import print_evaluation

    print_evaluation(scores, "json" if as_json else opts.log_format)
