"""`vaestudy report`: a study's figure, Parquet tables and claim verdicts (see
studies.results.report)."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import user_errors

DEFAULT_REPORTS = Path("vaestudy-reports")


@click.command()
@click.argument("path")
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI. For a study folder: where its parent run is [default: the URI it "
    "was run with]. Otherwise PATH is an MLflow experiment read from this URI.",
)
@click.option(
    "--experiment",
    default=None,
    help="Read the trials from this MLflow experiment (needs --tracking-uri); PATH is then the "
    "folder to write into.",
)
@click.option(
    "--out",
    default=None,
    help="Folder to write into [default: the study folder; for an experiment "
    "./vaestudy-reports/NAME].",
)
def report(path: str, tracking_uri: str | None, experiment: str | None, out: str | None) -> None:
    """Check a study against the paper: its figure, Parquet tables and claim verdicts.

    Writes trials.parquet, summary.parquet, the paper's figure redrawn (PNG), claims.json
    and report.md into the study folder, and logs them under report/ of the study's
    parent MLflow run. Each claim the study declares is PASS, FAIL or INCONCLUSIVE (a
    trial it needs is missing or failed), against thresholds fixed in the study file.

    \b
    Example:
      vaestudy report vaestudy-runs/alpha-sweep
      vaestudy report alpha-sweep --tracking-uri http://mlflow:5000 --out reports/alpha
    """
    from studies.errors import StudyError
    from studies.results.report import write_report
    from studies.store import StudyStore

    with user_errors():
        if experiment is None and not StudyStore(path).exists("study.json"):
            if not tracking_uri:
                raise StudyError(
                    f"{path} is not a study folder (no study.json); to report an MLflow experiment "
                    "give its name with --tracking-uri"
                )
            experiment, path = path, out or str(DEFAULT_REPORTS / path)
        elif experiment is not None:
            path = out or path
        written = write_report(
            path, tracking_uri=tracking_uri, experiment=experiment, out=None if experiment else out
        )
        verdicts = StudyStore(path if experiment else out or path).read_json("claims.json")
    for c in verdicts["claims"]:
        click.echo(f"{c['verdict']:13}{c['id']}" + (f"  ({c['note']})" if c["note"] else ""))
    click.echo(f"report: {written['report.md']} ({len(written)} files)")
