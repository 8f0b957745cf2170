"""`vaestudy run` and `resume`: a study run on Ray, and continued."""

from __future__ import annotations

import json
from pathlib import Path

import click


def set_option(f):
    return click.option(
        "--set",
        "assignments",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a config value (repeatable): length, alpha, dropout, depth, latent, "
        "hidden, steps, batch_size, lr, anneal, kl, corpus, seed, ...",
    )(f)


def _run_options(f):
    options = [
        click.option(
            "--preset",
            default="smoke",
            show_default=True,
            help="smoke, cpu or paper, or one a study adds (`vaestudy show STUDY` lists them).",
        ),
        click.option(
            "--num-samples",
            type=int,
            default=None,
            help="Grid studies: repeats of each point (seeds seed, seed+1, ...). "
            "Search studies: trials.",
        ),
        set_option,
        click.option(
            "--address",
            default=None,
            help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT [default: $VAESTUDY_ADDRESS, "
            "else $RAY_ADDRESS, else a local Ray on 127.0.0.1].",
        ),
        click.option(
            "--storage",
            default=None,
            help="Study folder: a path or s3://bucket/path [default: $VAESTUDY_STORAGE, else "
            "./vaestudy-runs/STUDY].",
        ),
        click.option(
            "--tracking-uri",
            default=None,
            help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else SQLite in the study "
            "folder].",
        ),
        click.option(
            "--optuna-storage",
            default=None,
            help="SQLAlchemy URL of the Optuna database [default: SQLite in the study folder].",
        ),
        click.option("--cpus-per-trial", type=float, default=1.0, show_default=True),
        click.option(
            "--gpus-per-trial",
            type=float,
            default=0.0,
            show_default=True,
            help="Fractions allowed.",
        ),
        click.option(
            "--max-concurrent",
            type=int,
            default=None,
            help="Trials at once [default: as resources allow].",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--asha", is_flag=True, help="Stop poor trials early with ASHA (single-metric studies)."
        ),
        click.option(
            "--collapse-threshold",
            type=float,
            default=0.005,
            show_default=True,
            help="Valid KL (bits/char) below which a trial counts as collapsed after annealing "
            "(MI and z gain must be under theirs too).",
        ),
        click.option(
            "--collapse-mi",
            type=float,
            default=0.05,
            show_default=True,
            help="Valid MI (nats) below which a trial can count as collapsed.",
        ),
        click.option(
            "--collapse-z-gain",
            type=float,
            default=0.02,
            show_default=True,
            help="Valid z gain (bits/char) below which a trial can count as collapsed.",
        ),
        click.option(
            "--collapse-patience",
            type=int,
            default=3,
            show_default=True,
            help="Reports below the threshold before a collapsed trial is stopped.",
        ),
        *_finish_options,
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


_finish_options = [
    click.option(
        "--register",
        default=None,
        metavar="NAME",
        help="At the end, register the best trial's logged model (by the study's metric; every "
        "Pareto-optimal trial's for a multi-objective study) as a version of MLflow model NAME.",
    ),
    click.option(
        "--report/--no-report",
        "write_report",
        default=True,
        show_default=True,
        help="Write the report (claims, figure, tables) into the folder and the parent run at "
        "the end.",
    ),
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the machine summary (one JSON object) at the end.",
    ),
    click.option(
        "--dashboard/--no-dashboard",
        envvar="VAESTUDY_DASHBOARD",
        default=None,
        help="Ray's dashboard on 127.0.0.1, with a local Ray: its start costs a second or two "
        "[default: on (resume: as the study ran), or $VAESTUDY_DASHBOARD (1 or 0)].",
    ),
]


def _finish_flags(f):
    for opt in reversed(_finish_options):
        f = opt(f)
    return f


def echo_err(line: str) -> None:
    click.echo(line, err=True)


def _conclude(name: str, outcome, as_json: bool) -> None:
    """After a run: the summary, for a person or as JSON."""
    verdicts, report_md = [], None
    if outcome.report:
        from studies.store import StudyStore

        report_md = outcome.report["report.md"]
        verdicts = StudyStore(outcome.folder).read_json("claims.json")["claims"]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "folder": outcome.folder,
                    "parent_run_id": outcome.parent_run_id,
                    "tracking_uri": outcome.tracking_uri,
                    "statuses": outcome.statuses,
                    "trials_parquet": outcome.trials_parquet,
                    "wall_time_s": round(outcome.wall_time_s, 1),
                    "report": report_md,
                    "claims": {c["id"]: c["verdict"] for c in verdicts},
                }
            )
        )
        return
    minutes, seconds = divmod(int(outcome.wall_time_s), 60)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.statuses.items())) or "no trials"
    click.echo(
        f"[{name}] finished in "
        f"{f'{minutes}m{seconds:02d}s' if minutes else f'{seconds}s'}: {counts}"
    )
    click.echo(f"  folder   {outcome.folder}")
    if report_md:
        from studies.results.claims import tally

        said = tally(verdicts) or "none declared"
        click.echo(f"  report   {report_md}  (claims: {said})")
    click.echo(f"  next     vaestudy ui {outcome.folder}        # MLflow UI: every trial's curves")
    click.echo(
        f"           vaestudy report {outcome.folder}    # "
        + ("the report again, e.g. after a resume" if report_md else "claims, figure and tables")
    )


@click.command()
@click.argument("study")
@_run_options
def run(
    study: str,
    preset: str,
    num_samples: int | None,
    assignments: tuple[str, ...],
    write_report: bool,
    as_json: bool,
    dashboard: bool | None,
    **kw,
) -> None:
    """Run a study (a built-in name or a study .py file) on Ray, tracked in MLflow.

    Running it again into the same folder resumes it: finished trials are kept and
    interrupted ones continue from their checkpoints. Each trial that completes (or stops
    as collapsed) has its model logged to its MLflow run as `model/` (an MLflow pyfunc
    model; `vaestudy sample runs:/RUN_ID/model` decodes from it). At the end the report
    is written (--no-report skips it), --register NAME registers the best trial's model
    in MLflow's model registry, and a summary is printed (--json: one JSON object).

    A study file given by path is Python code that runs with your rights: run only
    files you trust.

    \b
    Example:
      vaestudy run alpha-sweep --preset smoke
      vaestudy run fragment-length --preset cpu --cpus-per-trial 2
      vaestudy run alpha-sweep --preset smoke --register alpha-best
      vaestudy run alpha-sweep --preset paper --address auto --gpus-per-trial 0.25 \\
          --storage s3://bucket/studies/alpha --tracking-uri http://mlflow:5000
    """
    from studies.run.plan import RunOptions
    from studies.run.runner import run_study
    from textvae_core import parse_assignments

    opts = RunOptions(
        preset=preset,
        num_samples=num_samples,
        overrides=parse_assignments(assignments),
        report=write_report,
        dashboard=True if dashboard is None else dashboard,
        **kw,
    )
    outcome = run_study(study, opts, echo=echo_err)
    _conclude(Path(study).stem if study.endswith(".py") else study, outcome, as_json)


@click.command()
@click.argument("path")
@click.option(
    "--address",
    default=None,
    help="Ray cluster to resume on [default: the saved one, else $VAESTUDY_ADDRESS].",
)
@_finish_flags
def resume(
    path: str,
    address: str | None,
    register: str | None,
    write_report: bool,
    as_json: bool,
    dashboard: bool | None,
) -> None:
    """Finish an interrupted study from its folder (a path or s3://... URI).

    \b
    Example:
      vaestudy resume vaestudy-runs/alpha-sweep
    """
    import dataclasses

    from studies.run.plan import resume_options
    from studies.run.runner import run_study

    ref, opts = resume_options(path)
    opts = dataclasses.replace(
        opts,
        report=write_report,
        **({"address": address} if address else {}),
        **({"register": register} if register else {}),
        **({"dashboard": dashboard} if dashboard is not None else {}),
    )
    outcome = run_study(ref, opts, echo=echo_err)
    _conclude(Path(ref).stem if ref.endswith(".py") else ref, outcome, as_json)
