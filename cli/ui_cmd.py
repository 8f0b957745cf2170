"""`vaestudy ui`: a study shown in MLflow's UI (or its Optuna database in optuna-dashboard)."""

from __future__ import annotations

from pathlib import Path

import click

from studies import DEFAULT_ROOT

from .errors import user_errors


@click.command()
@click.argument("path", default=str(DEFAULT_ROOT), required=False)
@click.option("--port", default=None, type=int, help="[default: 5000 for MLflow, 8080 for Optuna]")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind; loopback by default."
)
@click.option(
    "--optuna", is_flag=True, help="optuna-dashboard for the study's Optuna database instead."
)
def ui(path: str, port: int | None, host: str, optuna: bool) -> None:
    """The MLflow UI of a study: served on 127.0.0.1 for a study folder's SQLite store, or the
    URL of its experiment on the tracking server it was run with. With --optuna, the
    study's Optuna database in optuna-dashboard (trials, history, the Pareto front).

    PATH is the study folder `vaestudy run` printed (local or s3://...), or (MLflow) a
    folder of study folders, or a bare MLflow store folder (one holding mlflow.db).

    \b
    Example:
      vaestudy ui vaestudy-runs/alpha-sweep
      vaestudy ui vaestudy-runs/kl-frontier --optuna
    """
    from studies.run.logs import LOG_FILE

    if optuna:
        from studies.run.search import dashboard
        from studies.store import StudyStore

        with user_errors():
            store = StudyStore(path)
            cmd, url = dashboard(store, host, port or 8080)
        _serve(cmd, None, url, store.local_dir / LOG_FILE, f"Optuna dashboard for {path}")
        return
    from studies.tracking.ui import experiment_url, server_command, ui_target
    from studies.tracking.views import SEEDS

    port = port or 5000
    with user_errors():
        target = ui_target(path)
        base = target.tracking_uri if target.db is None else f"http://{host}:{port}"
        url = experiment_url(base, target)
        seeds = (
            f"\n  seeds grouped by grid point (mean, min-max band): "
            f"{experiment_url(base, target, SEEDS)}"
            if target.experiment
            else ""
        )
        if target.db is None:  # a tracking server already serves it
            click.echo(f"MLflow UI for {path}: {url}{seeds}")
            return
    if target.others:
        click.echo(
            f"{target.others + 1} studies under {path}; showing {target.db.parent.name} "
            "(pass its folder to choose)",
            err=True,
        )
    cmd, env = server_command(target.db, host, port)
    _serve(
        cmd,
        env,
        f"http://{host}:{port}/health",
        target.db.parent / LOG_FILE,
        f"MLflow UI for {target.db.parent}",
        shown=url,
        also=seeds,
    )


def _serve(
    cmd: list[str],
    env: dict[str, str] | None,
    ready_url: str,
    log: Path,
    what: str,
    shown: str | None = None,
    also: str = "",
) -> None:
    """Run a UI server with its own output appended to the study's log, say where it is once
    it answers `ready_url`, and stop it on Ctrl-C, SIGTERM or SIGHUP (the server has its own
    session, so a signal to this process alone would otherwise leave it running). A server
    that exits first is one line."""
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    from .errors import UserError

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(ready_url, timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        if proc.poll() is not None:
            tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            raise UserError(
                f"{what}: the server exited with code {proc.returncode} before it answered "
                f"({tail[-1].strip() if tail else 'no output'}); its output is in {log}"
            )
        click.echo(f"{what}: {shown or ready_url}  (Ctrl-C stops it; server output: {log}){also}")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
