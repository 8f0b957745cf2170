"""The `vaestudy` command: a thin click layer over `studies` and `textvae_core`.

Heavy imports (torch, ray, mlflow) happen inside commands so `vaestudy --help` is instant.
Expected failures (bad config, missing data, unknown study) print one line and exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from studies import DEFAULT_ROOT
from textvae_core.config import MODELS

from .data import data
from .errors import UserError, user_errors


class Group(click.Group):
    """Turns the project's expected errors, and click's own usage errors, into one clean
    line and exit code 2."""

    def invoke(self, ctx: click.Context):
        with user_errors():
            return super().invoke(ctx)

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            if not standalone_mode:
                raise
            click.echo(f"Error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            if not standalone_mode:
                raise
            click.echo("Aborted!", err=True)
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


@click.group(
    cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="vaestudy")
def cli() -> None:
    """Hyperparameter studies for text VAEs (Semeniuta et al., EMNLP 2017).

    \b
    Example:
      vaestudy run alpha-sweep --preset smoke
      vaestudy train hybrid-lstm --set corpus=synthetic --set steps=200
    """


cli.add_command(data)

from .report_cmd import report  # noqa: E402 - registered beside the other commands

cli.add_command(report)

from .bench_cmds import bench  # noqa: E402

cli.add_command(bench)

from .study_cmds import resume, run, set_option  # noqa: E402
from .ui_cmd import ui  # noqa: E402

for command in (run, resume, ui):
    cli.add_command(command)


@cli.command()
@click.argument("model", type=click.Choice(MODELS))
@click.option(
    "--preset",
    default="ptb",
    show_default=True,
    help="Base sizes: ptb (released defaults), tweets, tiny.",
)
@set_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder [default: ./vaestudy-runs/train/MODEL].",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
def train(
    model: str, preset: str, assignments: tuple[str, ...], out_dir: Path | None, resume: bool
) -> None:
    """Train one configuration without Ray; write a checkpoint and metrics.parquet.

    \b
    Example:
      vaestudy train hybrid-lstm --set corpus=synthetic --set steps=300 --set eval_every=100
    """
    from textvae_core import fit, make_config, parse_assignments, write_history
    from textvae_core.measures import key as metric_key

    label_names = ("nll_nats", "rec_nats", "kl_nats", "ppl", "total_bpc", "rec_bpc", "kl_bpc")

    config = make_config(model, preset, parse_assignments(assignments))
    out_dir = out_dir or DEFAULT_ROOT / "train" / model
    ckpt = out_dir / "checkpoint.pt"
    if resume and not ckpt.exists():
        raise UserError(
            f"--resume: no checkpoint at {ckpt}; run without --resume to start a new run"
        )
    if resume:  # an unreadable checkpoint is one line before any progress is drawn
        from textvae_core.checkpoint import check_checkpoint

        check_checkpoint(ckpt)

    from textvae_core import load_corpus  # before the bar: a bad corpus is one line

    corpus = load_corpus(config.corpus, tokens=config.tokens, vocab_size=config.vocab_size)
    bar = click.progressbar(length=config.steps, label=f"{model}", show_pos=True, file=sys.stderr)
    last = [0]

    def on_report(report, trainer):
        trainer.save(ckpt)
        write_history(trainer.history, out_dir / "metrics.parquet")
        bar.update(report.step - last[0])
        last[0] = report.step
        m = report.metrics
        v = {name: m.get(metric_key("valid", name), float("nan")) for name in label_names}
        bar.label = (
            f"{model} valid NLL {v['nll_nats']:.2f} rec {v['rec_nats']:.2f} "
            f"kl {v['kl_nats']:.2f} nats/sentence, PPL {v['ppl']:.1f}"
            if config.tokens == "word"
            else f"{model} valid total {v['total_bpc']:.3f} rec {v['rec_bpc']:.3f} "
            f"kl {v['kl_bpc']:.3f} bpc"
        )

    with bar:
        trainer = fit(
            config, on_report=on_report, resume_from=ckpt if resume else None, corpus=corpus
        )
    final = trainer.history[-1].metrics
    click.echo(json.dumps({k: round(v, 4) for k, v in final.items()}, indent=1))
    click.echo(f"checkpoint: {ckpt}\nmetrics: {out_dir / 'metrics.parquet'}")


def _checkpoint_file(ref: str, tracking_uri: str | None, tmp: str) -> Path:
    """The checkpoint file `sample` reads: `ref` itself, or a logged model's, downloaded."""
    if not ref.startswith(("runs:/", "models:/")):  # a file: MLflow is not imported
        if not Path(ref).is_file():
            raise UserError(
                f"checkpoint {ref}: no such file (a logged model is runs:/RUN_ID/model "
                "or models:/NAME/VERSION)"
            )
        return Path(ref)
    if not tracking_uri:
        raise UserError(f"{ref}: give its MLflow store with --tracking-uri or $MLFLOW_TRACKING_URI")
    from studies.tracking.models import download_checkpoint
    from studies.tracking.uris import adopt_uri_credentials, check_existing_store, quiet_stdout

    quiet_stdout()
    tracking_uri = adopt_uri_credentials(tracking_uri)
    check_existing_store(tracking_uri)
    return download_checkpoint(ref, tracking_uri, tmp)


@cli.command()
@click.argument("checkpoint")
@click.option("-n", "--num", default=5, show_default=True, help="Samples from the prior.")
@click.option("--temperature", default=0.0, show_default=True, help="0 decodes greedily.")
@click.option(
    "--reconstruct", "texts", multiple=True, help="A text to encode and decode (repeatable)."
)
@click.option("--interpolate", nargs=2, default=None, help="Two texts to interpolate between.")
@click.option("--steps", default=5, show_default=True, help="Points on the interpolation line.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow tracking URI a runs:/ or models:/ CHECKPOINT is read from "
    "[default: $MLFLOW_TRACKING_URI].",
)
def sample(
    checkpoint: str,
    num: int,
    temperature: float,
    texts: tuple[str, ...],
    interpolate: tuple[str, str] | None,
    steps: int,
    seed: int,
    tracking_uri: str | None,
) -> None:
    """Decode from a trained checkpoint: prior samples, reconstructions, interpolations.

    CHECKPOINT is a checkpoint file, or a trial's model logged to MLflow by a study:
    runs:/RUN_ID/model or models:/NAME/VERSION (read from --tracking-uri).

    \b
    Example:
      vaestudy sample vaestudy-runs/train/hybrid-lstm/checkpoint.pt -n 3 --reconstruct "the company said"
      vaestudy sample models:/alpha-best/1 --tracking-uri sqlite:///vaestudy-runs/alpha-sweep/mlflow.db
    """  # noqa: E501 - the example is verbatim help text (\b): one command a line
    import tempfile

    from textvae_core import load_checkpoint
    from textvae_core import sampling

    with tempfile.TemporaryDirectory(prefix="vaestudy-sample-") as tmp:
        model, config, vocab = load_checkpoint(_checkpoint_file(checkpoint, tracking_uri, tmp))
    show = lambda s: s.replace("\n", "\\n")  # noqa: E731
    click.echo(f"# {num} samples from the prior (L={config.length}, temperature {temperature})")
    for s in sampling.sample_prior(model, vocab, num, temperature, seed):
        click.echo(show(s))
    if texts:
        click.echo("# reconstructions (input -> output)")
        for t, r in zip(texts, sampling.reconstruct(model, vocab, list(texts), temperature, seed)):
            click.echo(f"{show(sampling.fit_length(t, config.length))} -> {show(r)}")
    if interpolate:
        click.echo(f"# interpolation in {steps} steps")
        for s in sampling.interpolate(model, vocab, interpolate[0], interpolate[1], steps):
            click.echo(show(s))


# --- studies ---------------------------------------------------------------------------------


@cli.command("list")
def list_studies() -> None:
    """List the built-in studies and what each reproduces.

    \b
    Example:
      vaestudy list
    """
    from studies.loading import builtin_studies, load_study

    rows = [(name, load_study(name)) for name in builtin_studies()]
    w_name = max(len(name) for name, _ in rows) + 2
    w_what = max(len(s.reproduces) for _, s in rows) + 2
    for name, s in rows:  # columns as wide as their longest entry, two spaces apart
        click.echo(f"{name:{w_name}}{s.reproduces:{w_what}}{s.title}")


@cli.command()
@click.argument("study")
@click.option("--json", "as_json", is_flag=True, help="Print the study as JSON.")
def show(study: str, as_json: bool) -> None:
    """Show a study: its sweep, presets with trial counts and expected cost, and claims.

    \b
    Example:
      vaestudy show alpha-sweep
    """
    from studies.loading import load_study

    d = load_study(study).describe()
    if as_json:
        click.echo(json.dumps(d, indent=1, default=str))
        return
    click.echo(f"{d['name']}: {d['title']} ({d['reproduces']})")
    click.echo(f"model {d['model']}, sampler {d['sampler']}, metric {d['metric']} ({d['mode']})")
    for k, v in d["variants"].items():
        click.echo(f"  variant {k}: {v}")
    for k, v in (d["grid"] or d["space"]).items():
        click.echo(f"  {'grid' if d['grid'] else 'space'} {k}: {v}")
    for name, p in d["presets"].items():
        seeds = (
            f"  {len(p['seeds'])} seed{'s' if len(p['seeds']) > 1 else ''}" if p["seeds"] else ""
        )
        click.echo(
            f"  preset {name:6} {p['trials']:>3} trials{seeds}  size {p['size']:5} "
            f"corpus {p['corpus']:10} {p['cost']}"
        )
    for c in d["claims"]:
        click.echo(f"  claim {c['id']}: {c['text']}")
        for k in c["controls"]:
            click.echo(f"    control: {k['text']}")


def main() -> None:
    cli(prog_name="vaestudy")


if __name__ == "__main__":
    main()
