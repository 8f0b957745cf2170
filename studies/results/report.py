"""`write_report`: a study's measured results as files, checked against the paper's claims.

From a study folder (or, with a tracking URI, an MLflow experiment) it writes

    trials.parquet    one row per trial per report per split (`studies.records`)
    summary.parquet   one row per trial: hyperparameters, status, final valid metrics
                      (total, rec, KL and aux bits/char, active units, mutual information,
                      importance-weighted bound), steps, wall time, training chars/s
    <figure>.png      the paper's figure redrawn from the measured data (the study's `figure`)
    claims.json       per claim: the measured values, the threshold, PASS / FAIL / INCONCLUSIVE
    report.md         the claims table, the figure and a per-trial table

and logs them as artifacts under `report/` of the study's parent MLflow run.

A study's `figure` string says what to draw (values are averaged over seeds):

    "X|SERIES"           final valid full cost (solid) and KL (dashed) against X, a line per
                         value of SERIES: Fig 4 ("length|variant"), Fig 5 ("alpha|anneal"),
                         Fig 6 ("depth|alpha")
    "X|"                 stacked bars of reconstruction and KL per value of X (Table 2)
    "step|SERIES/PANEL"  training (solid) and validation (dashed) reconstruction against the
                         step, a line per SERIES value, a panel per PANEL value (Fig 3)
    "pareto"             Optuna's Pareto front and parameter importances (search studies)

Any "X|..." form takes "/PANEL" for one panel per value of PANEL.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from textvae_core.train import METRIC_NAMES as METRICS, SPLITS  # the columns of a trial's history

from . import checks, claims as claims_mod
from ..errors import StudyError
from ..records import CONFIG_COLUMNS, trials_table
from ..spec import Study, load_study, trial_name
from ..store import StudyStore

# Config values a summary row carries beside the swept ones (`steps` is the steps trained).
SUMMARY_CONFIG = tuple(c for c in CONFIG_COLUMNS if c != "steps")
SUMMARY_MEASURES = checks.MEASURES
PARENT_TAG, TRIAL_KEY_TAG, STATUS_TAG = "mlflow.parentRunId", "vaestudy.trial_key", "vaestudy.status"
BPC = "Bits per character"
AXIS_LABELS = {"length": "Text fragment size, characters", "alpha": "α, weight of the auxiliary cost",
               "depth": "Number of convolutional layers", "dropout": "Input dropout p", "step": "Iteration"}


@dataclass
class StudyResults:
    """What a report is made of, whichever source it was read from."""

    study: Study
    preset: str
    corpus: str
    summary: list[dict[str, Any]]  # one row per trial
    trials: pa.Table  # one row per trial per report per split
    parent_run_id: str | None
    tracking_uri: str | None
    source: str  # where the trials were read from, said plainly
    seeds: tuple[int, ...] | None = None  # the seeds the study ran (None: those in the rows)


# --- reading a study folder ------------------------------------------------------------------


def read_folder(folder: str, tracking_uri: str | None = None) -> StudyResults:
    """The trials of a study folder, from its trial store (the source of truth)."""
    store = StudyStore(folder)
    state = store.read_json("study.json")
    if not state or "identity" not in state:
        raise StudyError(f"{folder} is not a study folder (no study.json); `vaestudy run STUDY` makes one, "
                         "or give an MLflow experiment name with --tracking-uri")
    identity = state["identity"]
    study = _definition(state.get("study_ref"), identity["study"])
    store.sync_down(("mlflow.db",))  # a remote study's tracking store lives in a local cache
    summary = []
    for key in store.trial_keys():
        trial = store.trial(key)
        if not trial:
            continue
        path = f"trials/{key}/history.parquet"
        history = store.read_table(path).to_pylist() if store.exists(path) else []
        wall = trial.get("trial_wall_s")
        if wall is None and trial.get("ended") and trial.get("started"):
            wall = trial["ended"] - trial["started"]
        summary.append(summary_row(key, trial.get("params", {}), trial.get("config", {}),
                                   trial.get("status", "unknown"), trial.get("reason"), history, wall,
                                   trial.get("mlflow_run_id")))
    preset = identity["preset"]
    return StudyResults(study, preset, _corpus(summary, study, preset), _with_identity(summary, study, preset),
                        trials_table(store, study.name), state.get("parent_run_id"),
                        tracking_uri or state.get("tracking_uri"), store.uri, _seeds(study, identity))


def _seeds(study: Study, identity: Mapping[str, Any]) -> tuple[int, ...] | None:
    """A grid study's seeds: `trials` repeats of its points from seed `seed` on."""
    if not study.is_grid or identity["preset"] not in study.presets:
        return None
    points = len(study.points(identity["preset"]))
    first, repeats = int(identity.get("seed", 0)), max(1, int(identity.get("trials", points)) // max(points, 1))
    return tuple(range(first, first + repeats))


def _definition(ref: str | None, name: str) -> Study:
    """The study's definition: by the reference it was run with (a name or a study file), else
    by its name; a study file that exists but does not load is an error in its own words."""
    for candidate in (ref, name):
        if not candidate:
            continue
        try:
            return load_study(candidate)
        except StudyError:
            if Path(candidate).is_file():
                raise
    raise StudyError(f"cannot load the definition of study {name!r} (run as {ref!r}): neither a built-in study "
                     "nor an existing study file")


def summary_row(key: str, params: Mapping[str, Any], config: Mapping[str, Any], status: str, reason: str | None,
                history: Sequence[Mapping[str, Any]], wall_s: float | None, run_id: str | None) -> dict[str, Any]:
    """One trial: its hyperparameters, status, last valid metrics, steps, wall time and mean
    training chars/s over its reports."""
    valid = [r for r in history if r["split"] == "valid"]
    last = max(valid, key=lambda r: r["step"]) if valid else {}
    speeds = [r["chars_per_s"] for r in history if r["split"] == "train" and _finite(r.get("chars_per_s"))]
    row: dict[str, Any] = {"trial_key": key, "name": trial_name(params), "status": status, "reason": reason,
                           "corpus": config.get("corpus")}
    row.update(params)
    row.update({c: config[c] for c in SUMMARY_CONFIG if c in config and c not in row})
    row.update({m: _float(last.get(m)) for m in SUMMARY_MEASURES})
    row["steps"] = max((int(r["step"]) for r in history), default=None)
    row["wall_s"] = _float(wall_s)
    row["chars_per_s"] = sum(speeds) / len(speeds) if speeds else math.nan
    row["mlflow_run_id"] = run_id
    # mutual_info is estimated on the validation fragments, so it never exceeds log of their number
    n = (config.get("batch_size") or 0) * (config.get("eval_batches") or 0)
    row["mi_max"] = math.log(n) if n else math.nan
    pool = config.get("mi_pool") or 0  # the final MI over a larger pool, capped at its own log N
    row["mi_pool_max"] = math.log(pool) if pool else math.nan
    # the validation reports by step, for claims that read a trial's history (not in summary.parquet)
    row["history"] = {int(r["step"]): {m: _float(r.get(m)) for m in SUMMARY_MEASURES} for r in valid}
    return row


def _with_identity(rows: list[dict], study: Study, preset: str) -> list[dict]:
    """Rows with the study and preset first, in the order of the study's grid."""
    swept = _swept(study, preset)
    rows = sorted(rows, key=lambda r: tuple(_rank(study, k, r.get(k)) for k in swept))
    return [{"study": study.name, "preset": preset, **r} for r in rows]


def _corpus(rows: Sequence[Mapping[str, Any]], study: Study, preset: str) -> str:
    found = sorted({str(r["corpus"]) for r in rows if r.get("corpus")})
    if found:
        return ", ".join(found)
    return study.presets[preset].corpus if preset in study.presets else "unknown"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


# --- reading an MLflow experiment ------------------------------------------------------------


def read_experiment(tracking_uri: str, experiment: str) -> StudyResults:
    """The trials of the latest study launch logged to an MLflow experiment: its parent run's
    child runs (`sweep.*` params are the swept values; tags give key and status; metric
    histories give the reports)."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    _check_existing_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage != "active":
        raise StudyError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
    runs, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], "", ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    parents = [r for r in runs if PARENT_TAG not in r.data.tags and "vaestudy.study" in r.data.tags]
    if not parents:
        raise StudyError(f"MLflow experiment {experiment!r} at {tracking_uri} holds no vaestudy study run")
    parent = max(parents, key=lambda r: r.info.start_time)
    study = _definition(None, parent.data.tags["vaestudy.study"])
    preset = parent.data.tags.get("vaestudy.preset", "unknown")
    summary, tables = [], []
    for run in sorted((r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id),
                      key=lambda r: r.info.start_time):
        p = run.data.params
        params = {k.removeprefix("sweep."): _parse(v) for k, v in p.items() if k.startswith("sweep.")}
        config = {k: _parse(p[k]) for k in (*CONFIG_COLUMNS, "corpus", "batch_size", "eval_batches", "mi_pool")
                  if k in p}
        key = run.data.tags.get(TRIAL_KEY_TAG, run.info.run_id)
        status = run.data.tags.get(STATUS_TAG) or run.info.status.lower()
        history = _metric_history(client, run)
        wall = (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None
        summary.append(summary_row(key, params, config, status, run.data.tags.get("vaestudy.status_reason"),
                                   history, wall, run.info.run_id))
        if history:
            head = {"study": study.name, "trial_key": key, "status": status,
                    **{f"param_{k}": v for k, v in params.items()},
                    **{c: config[c] for c in CONFIG_COLUMNS if c in config}}
            tables.append(pa.Table.from_pylist([{**head, **h} for h in history]))
    trials = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table(
        {"study": pa.array([], pa.string()), "trial_key": pa.array([], pa.string())})
    return StudyResults(study, preset, _corpus(summary, study, preset), _with_identity(summary, study, preset),
                        trials, parent.info.run_id, tracking_uri, f"MLflow experiment {experiment!r} at {tracking_uri}")


def _parse(text: str) -> Any:
    """An MLflow param (always a string) back to the value that was logged."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _metric_history(client, run) -> list[dict[str, Any]]:
    """A run's reports as history rows (step, split, METRICS), like a trial's history.parquet."""
    by_step: dict[int, dict[str, dict[str, float]]] = {}
    for name in run.data.metrics:
        split, _, metric = name.partition("/")
        if split not in SPLITS or metric not in METRICS:
            continue
        for m in sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.timestamp):
            by_step.setdefault(m.step, {s: {} for s in SPLITS})[split][metric] = m.value
    return [{"step": step, "split": split, **{m: by_step[step][split].get(m, math.nan) for m in METRICS}}
            for step in sorted(by_step) for split in SPLITS]


# --- figures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureSpec:
    kind: str  # "none", "lines", "bars", "curves" or "pareto"
    x: str | None = None
    series: str | None = None
    panel: str | None = None


FIGURE_FORMS = "'X|SERIES', 'X|', 'step|SERIES', any of them with '/PANEL', 'pareto' or ''"


def parse_figure(spec: str) -> FigureSpec:
    spec = spec.strip()
    if not spec:
        return FigureSpec("none")
    if spec == "pareto":
        return FigureSpec("pareto")
    x, bar, rest = spec.partition("|")
    series, slash, panel = rest.partition("/")
    if not bar or not x or "|" in rest or (slash and not panel):
        raise StudyError(f"figure {spec!r}: expected {FIGURE_FORMS}")
    if x == "step":
        return FigureSpec("curves", x, series or None, panel or None)
    return FigureSpec("lines" if series else "bars", x, series or None, panel or None)


def figure_files(study: Study) -> list[str]:
    """The PNG files a study's report draws."""
    spec = parse_figure(study.figure)
    if spec.kind == "none":
        return []
    if spec.kind == "pareto":
        return ["pareto_front.png", "param_importances.png"]
    return [(re.sub(r"[^a-z0-9]+", "", study.reproduces.lower()) or "figure") + ".png"]


def draw_figures(results: StudyResults, out: Path) -> tuple[list[str], list[str]]:
    """Draw the study's figure into `out`; returns the files written and notes on anything
    that could not be drawn."""
    spec = parse_figure(results.study.figure)
    if spec.kind == "none":
        return [], [f"study {results.study.name} declares no figure"]
    if spec.kind == "pareto":
        return _draw_pareto(results, out)
    name = figure_files(results.study)[0]
    fig = {"lines": _draw_lines, "bars": _draw_bars, "curves": _draw_curves}[spec.kind](results, spec)
    fig.savefig(out / name, dpi=110)
    return [name], []


def _title(results: StudyResults, what: str) -> str:
    return f"{what}\nstudy {results.study.name}, preset {results.preset}, corpus {results.corpus}"


def _panels(results: StudyResults, rows: Sequence[Mapping[str, Any]], panel: str | None) -> list[Any]:
    values = _ordered(results.study, panel, [r.get(panel) for r in rows]) if panel else []
    return values or [None]


def _ordered(study: Study, name: str | None, values: Sequence[Any]) -> list[Any]:
    """Distinct values in the study's declared order (grid or variants), else sorted."""
    distinct: list[Any] = []
    for v in values:
        if v is not None and v not in distinct:
            distinct.append(v)
    return sorted(distinct, key=lambda v: _rank(study, name, v))


def _rank(study: Study, name: str | None, value: Any) -> tuple:
    """Sort key: position in the study's grid (or variants) first, then numbers, then text."""
    declared = list(study.grid.get(name, ())) + (list(study.variants) if name == "variant" else [])
    position = next((i for i, d in enumerate(declared) if d == value and type(d) is type(value)), len(declared))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (position, 0, value, "")
    return (position, 1, 0, str(value))


def _label(name: str | None, value: Any) -> str:
    if name == "anneal":
        return "with annealing" if value else "without annealing"
    if name == "alpha":
        return f"α={value:g}"
    if name == "length":
        return f"{value} characters"
    if name == "depth":
        return f"{value} layers"
    if name == "variant":
        return str(value)
    return f"{name}={value}"


def _new_figure(panels: int):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.4, 4.6 * panels), 4.8), layout="constrained")
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def _style_legend(ax, handles_first: list, styles: Sequence[tuple[str, str]]) -> None:
    from matplotlib.lines import Line2D

    proxies = [Line2D([], [], color="0.3", linestyle=ls, label=text) for ls, text in styles]
    ax.legend(handles=handles_first + proxies, fontsize="small")


def _dress_axes(ax, spec: FigureSpec, panel: Any, xlabel: str, ylabel: str, empty: str | None,
                grid_axis: str = "both") -> None:
    """The axis labels, y from 0, grid, panel title and an "empty" notice every figure shares."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, axis=grid_axis)
    if panel is not None:
        ax.set_title(_label(spec.panel, panel), fontsize="medium")
    if empty:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)


def _usable_points(results: StudyResults) -> list[dict[str, Any]]:
    return [p for p in checks.average(results.summary) if p["status"] == "ok"]


def _draw_lines(results: StudyResults, spec: FigureSpec):
    """Full cost (solid) and KL (dashed) against x, one colour per series value (Fig 4-6)."""
    study, points = results.study, _usable_points(results)
    panels = _panels(results, points, spec.panel)
    fig, axes = _new_figure(len(panels))
    series = _ordered(study, spec.series, [p.get(spec.series) for p in points])
    colours = {s: f"C{i % 10}" for i, s in enumerate(series)}
    for ax, panel in zip(axes, panels):
        handles = []
        for s in series:
            pts = sorted((p for p in points if p.get(spec.series) == s and _finite(p.get(spec.x))
                          and (panel is None or p.get(spec.panel) == panel)), key=lambda p: p[spec.x])
            if not pts:
                continue
            xs = [p[spec.x] for p in pts]
            (line,) = ax.plot(xs, [p["total_bpc"] for p in pts], "-o", color=colours[s], label=_label(spec.series, s))
            ax.plot(xs, [p["kl_bpc"] for p in pts], "--s", color=colours[s], markersize=4)
            handles.append(line)
        _dress_axes(ax, spec, panel, AXIS_LABELS.get(spec.x, spec.x), BPC, None if handles else "no completed trials")
        _style_legend(ax, handles, (("-", "full cost (solid)"), ("--", "KL (dashed)")))
    fig.suptitle(_title(results, f"{study.reproduces}: {study.title}"))
    return fig


def _draw_bars(results: StudyResults, spec: FigureSpec):
    """Reconstruction and KL stacked (their sum is the full cost) per value of x (Table 2)."""
    study, points = results.study, _usable_points(results)
    panels = _panels(results, points, spec.panel)
    fig, axes = _new_figure(len(panels))
    for ax, panel in zip(axes, panels):
        pts = [p for p in points if panel is None or p.get(spec.panel) == panel]
        cats = _ordered(study, spec.x, [p.get(spec.x) for p in pts])
        by_cat = {c: next(p for p in pts if p.get(spec.x) == c) for c in cats}
        pos = list(range(len(cats)))
        rec = [by_cat[c]["rec_bpc"] for c in cats]
        kl = [by_cat[c]["kl_bpc"] for c in cats]
        ax.bar(pos, rec, color="C0", label="reconstruction")
        ax.bar(pos, kl, bottom=rec, color="C1", hatch="//", label="KL")
        for i, (r, k) in enumerate(zip(rec, kl)):
            ax.annotate(f"{r + k:.3f}", (i, r + k), ha="center", va="bottom", fontsize="small")
        ax.set_xticks(pos, [_label(spec.x, c) for c in cats], rotation=15 if len(cats) > 3 else 0)
        _dress_axes(ax, spec, panel, AXIS_LABELS.get(spec.x, spec.x), BPC, None if cats else "no completed trials",
                    grid_axis="y")
        top = max((r + k for r, k in zip(rec, kl) if _finite(r + k)), default=0.0)
        if top > 0:  # headroom for the totals written above the bars and for the legend
            ax.set_ylim(top=top * 1.3)
        ax.legend(fontsize="small", title="full cost = sum", title_fontsize="small", loc="upper center", ncols=2)
    fig.suptitle(_title(results, f"{study.reproduces}: {study.title}"))
    return fig


def _draw_curves(results: StudyResults, spec: FigureSpec):
    """Training (solid) and validation (dashed) reconstruction against the step, a line per
    series value and a panel per panel value (Fig 3). Every trial is drawn, failed ones too."""
    study = results.study
    by_key = {r["trial_key"]: r for r in results.summary}
    history: dict[str, list[dict]] = {}
    for r in results.trials.to_pylist():
        if r.get("trial_key") in by_key and "split" in r:
            history.setdefault(r["trial_key"], []).append(r)
    trials = [r for r in results.summary if r["trial_key"] in history]  # in the study's grid order
    panels = _panels(results, trials, spec.panel)
    fig, axes = _new_figure(len(panels))
    series = _ordered(study, spec.series, [t.get(spec.series) for t in trials]) if spec.series else [None]
    colours = {s: f"C{i % 10}" for i, s in enumerate(series)}
    for ax, panel in zip(axes, panels):
        handles, labelled = [], set()
        for t in trials:
            if panel is not None and t.get(spec.panel) != panel:
                continue
            s = t.get(spec.series) if spec.series else None
            rows = sorted(history[t["trial_key"]], key=lambda r: r["step"])
            for split, style in (("train", "-"), ("valid", "--")):
                pts = [(r["step"], r["rec_bpc"]) for r in rows if r["split"] == split and _finite(r.get("rec_bpc"))]
                if not pts:
                    continue
                (line,) = ax.plot(*zip(*pts), style, color=colours.get(s, "C0"),
                                  label=_label(spec.series, s) if spec.series else "trial")
                if split == "train" and s not in labelled:
                    labelled.add(s)
                    handles.append(line)
        _dress_axes(ax, spec, panel, AXIS_LABELS["step"], f"{BPC} (reconstruction)", None if handles else "no reports")
        _style_legend(ax, handles, (("-", "training (solid)"), ("--", "validation (dashed)")))
    fig.suptitle(_title(results, f"{study.reproduces}: {study.title}"))
    return fig


def optuna_study(results: StudyResults, lower_is_better: bool = False):
    """An in-memory Optuna study of the usable trials (the trial store is the source of
    truth, so collapsed trials count with their last metrics, as in the claims).

    lower_is_better: negate maximised metrics (named "... (high)") and minimise everything,
    for Optuna's default importance evaluator, which rates parameters for low values only.
    """
    import optuna

    from ..run import search

    study = results.study
    names, directions = list(study.metrics), list(study.directions)
    signs = [-1.0 if lower_is_better and d == "maximize" else 1.0 for d in directions]
    ostudy = optuna.create_study(directions=["minimize"] * len(names) if lower_is_better else directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ostudy.set_metric_names([f"{n} ({'high' if s < 0 else 'low'})" if lower_is_better else n
                                 for n, s in zip(names, signs)])
    dists = search.distributions(study, study.grid_for(results.preset) if study.is_grid else None)
    for row in results.summary:
        values = [row.get(n.split("/", 1)[-1]) for n in names]
        if row.get("status") not in checks.USABLE or not all(_finite(v) for v in values):
            continue
        params = {k: row[k] for k in dists if k in row}
        try:
            ostudy.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                       values=[s * v for s, v in zip(signs, values)]))
        except ValueError:  # a value outside the declared space (an edited study file)
            continue
    return ostudy


def _draw_pareto(results: StudyResults, out: Path) -> tuple[list[str], list[str]]:
    import matplotlib
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    front, ranked = optuna_study(results), optuna_study(results, lower_is_better=True)
    names = [f"{n} ({BPC.lower()})" for n in front.metric_names]
    files, notes = [], []
    title = f"study {results.study.name}, preset {results.preset}, corpus {results.corpus}"
    plots = (("pareto_front.png", lambda: ovm.plot_pareto_front(front, target_names=names), "Pareto front"),
             ("param_importances.png", lambda: ovm.plot_param_importances(ranked),
              "Parameter importances (for a low or a high value of each metric)"))
    for name, plot, what in plots:
        # Optuna's plots switch pyplot to its "ggplot" style globally; rc_context undoes that.
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes")  # handled: see `ranked`
            warnings.filterwarnings("ignore", "No artists with labels")  # a study without completed trials
            try:
                ax = plot()
            except (ValueError, RuntimeError) as exc:  # too few trials for Optuna's analysis
                notes.append(f"{what} not drawn: {exc}")
                continue
            for loc in ("left", "right"):  # Optuna's own title, replaced by ours
                ax.set_title("", loc=loc)
            ax.set_title(f"{what}\n{title}", fontsize="medium")
            ax.figure.set_size_inches(7.5, 5.5)
            ax.figure.savefig(out / name, dpi=110, bbox_inches="tight")
            files.append(name)
        plt.close("all")
    return files, notes


# --- claims, Markdown, Parquet ----------------------------------------------------------------


def summary_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns and k != "history"]
    if not columns:
        columns = ["study", "preset", "trial_key", "status", *SUMMARY_MEASURES]
    if not rows:
        return pa.table({c: pa.array([], pa.null()) for c in columns})
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(results: StudyResults, verdicts: Sequence[Mapping[str, Any]], figures: Sequence[str],
                    notes: Sequence[str]) -> str:
    study = results.study
    counts: dict[str, int] = {}
    for r in results.summary:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines = [f"# {study.name}: {study.title}", "",
             *([f"Reproduces {study.reproduces} of Semeniuta et al. (2017).  "]
               if study.reproduces != "search" else []),
             f"Study `{study.name}`, preset `{results.preset}`, corpus `{results.corpus}`: {len(results.summary)} "
             f"trials ({', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'none'}).  ",
             f"Read from {results.source}"
             + (f"; MLflow parent run `{results.parent_run_id}`." if results.parent_run_id else "."), ""]
    if results.preset == "smoke":
        lines += ["> **Smoke preset: these verdicts check the plumbing, not the paper.** Tiny models train for "
                  "seconds on a synthetic corpus; run `--preset cpu` or `paper` to test the claims.", ""]
    lines += ["## Claims", ""]
    if verdicts:
        lines += ["| claim | measured: mean [min, max] over seeds | threshold | per seed | verdict |",
                  "|---|---|---|---|---|"]
        for v in verdicts:
            measured = "<br>".join(f"{k}: {_fmt(x)}" + (f" [{_fmt(v['spread'][k][0])}, {_fmt(v['spread'][k][1])}]"
                                                        if len(v["seeds"]) > 1 and v["spread"].get(k) else "")
                                   for k, x in v["measured"].items()) or "-"
            seeds = "<br>".join(f"seed {p['seed']}: {p['verdict']}" + (f" ({p['note']})" if p["note"] else "")
                                for p in v["seeds"])
            verdict = f"**{v['verdict']}**" + (f" ({v['note']})" if v["verdict"] == "UNSTABLE" else "")
            controls = "".join(f"<br>control: {c['text']}" for c in v["controls"])
            lines.append(f"| `{v['id']}`: {_cell(v['text'])}{_cell(controls)} | {_cell(measured)} "
                         f"| {_cell(v['threshold'])} | {_cell(seeds)} | {_cell(verdict)} |")
        lines += ["", "Thresholds come from the study file and were fixed before any run. Each seed is judged on "
                  "its own: INCONCLUSIVE means a trial the claim needs is missing or failed, or a control failed "
                  "(the preset cannot test the claim). Over seeds, agreement gives that verdict and any mix is "
                  "UNSTABLE."]
    else:
        lines.append(f"Study `{study.name}` declares no claims.")
    lines += ["", "## Figure", ""]
    lines += [f"![{name}]({name})" for name in figures] + [f"- {n}" for n in notes]
    ceilings = sorted({round(r["mi_max"], 3) for r in results.summary if _finite(r.get("mi_max"))})
    pools = sorted({round(r["mi_pool_max"], 3) for r in results.summary if _finite(r.get("mi_pool_max"))})
    mi_note = ("MI is I(x; z) in nats (He et al. 2019), estimated on the N validation fragments of a report and "
               f"never above log N ({', '.join(map(str, ceilings))} here): a value marked (cap) means at least that "
               "much." if ceilings else "MI is I(x; z) in nats (He et al. 2019).")
    if pools:
        mi_note += (" MI pool is the final estimate over a larger pool of fragments, capped at its own log N "
                    f"({', '.join(map(str, pools))}).")
    lines += ["", "## Trials", "", f"Final validation metrics in bits per character, but for MI. {mi_note}", "",
              "| trial | status | total | rec | KL | aux | active units | MI | IW bound | MI pool | unigram | steps "
              "| wall s | chars/s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    swept = _swept(study, results.preset)
    if len({r.get("seed") for r in results.summary}) < 2:
        swept = [k for k in swept if k != "seed"]
    for r in results.summary:
        speed = round(r["chars_per_s"]) if _finite(r["chars_per_s"]) else None
        name = ", ".join(f"{k}={_fmt(r[k])}" for k in swept if k in r) or r["trial_key"]
        measures = [r[m] for m in SUMMARY_MEASURES]
        if _finite(r["mutual_info"]) and _finite(r.get("mi_max")) and r["mutual_info"] >= r["mi_max"] - 5e-3:
            measures[SUMMARY_MEASURES.index("mutual_info")] = f"{_fmt(r['mutual_info'])} (cap)"
        cells = [name, r["status"], *measures, r["steps"], r["wall_s"], speed]
        lines.append("| " + " | ".join(_cell(_fmt(c)) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _swept(study: Study, preset: str) -> list[str]:
    if not study.is_grid:
        return list(study.space)
    grid = study.grid_for(preset) if preset in study.presets else study.grid
    return [*grid, "seed"]


# --- the report --------------------------------------------------------------------------------


def write_report(folder: str, tracking_uri: str | None = None, experiment: str | None = None,
                 out: str | None = None) -> dict[str, str]:
    """Write a study's report and log it to its parent MLflow run; returns file name -> URI.

    folder: a study folder, read and written into; with `experiment`, only the folder to
        write into, the trials being read from that MLflow experiment at `tracking_uri`.
    tracking_uri: where the parent run is [default: the one in study.json].
    out: write here instead of into `folder`.
    Raises StudyError (or TrackingError) before writing anything when an input is bad.
    """
    if experiment is not None:
        if not tracking_uri:
            raise StudyError(f"reading MLflow experiment {experiment!r} needs --tracking-uri")
        results = read_experiment(tracking_uri, experiment)
    else:
        results = read_folder(folder, tracking_uri)
    target = StudyStore(out or folder)
    parse_figure(results.study.figure)  # a malformed spec fails before anything is written
    client = _parent_run_client(results)
    verdicts = claims_mod.evaluate(results.study, results.summary, results.preset, results.seeds)

    work = Path(tempfile.mkdtemp(prefix="vaestudy-report-"))
    try:
        pq.write_table(results.trials, work / "trials.parquet")
        pq.write_table(summary_table(results.summary), work / "summary.parquet")
        figures, notes = draw_figures(results, work)
        (work / "claims.json").write_text(json.dumps(
            {"study": results.study.name, "preset": results.preset, "corpus": results.corpus,
             "claims": verdicts}, indent=1, default=str))
        (work / "report.md").write_text(render_markdown(results, verdicts, figures, notes))
        written = {}
        for path in sorted(work.iterdir()):
            target.write_bytes(path.name, path.read_bytes())
            written[path.name] = target.uri_of(path.name)
        if client is not None:
            client.log_artifacts(results.parent_run_id, str(work), "report")
            tally = {v: sum(c["verdict"] == v for c in verdicts) for v in claims_mod.VERDICTS}
            client.set_tag(results.parent_run_id, "vaestudy.claims",
                           ", ".join(f"{n} {v}" for v, n in tally.items() if n) or "none")
            for c in verdicts:
                client.set_tag(results.parent_run_id, f"vaestudy.claim.{c['id']}", c["verdict"])
        if experiment is None:
            StudyStore(folder).sync_up(("mlflow.db",))
        return written
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _parent_run_client(results: StudyResults):
    """A client for the parent run, checked to exist (None if the study has no parent run)."""
    if not results.parent_run_id or not results.tracking_uri:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    _check_existing_store(results.tracking_uri)
    client = MlflowClient(tracking_uri=results.tracking_uri)
    try:
        client.get_run(results.parent_run_id)
    except MlflowException:
        raise StudyError(f"the study's parent MLflow run {results.parent_run_id} is not at {results.tracking_uri}; "
                         "give the tracking URI it was logged to with --tracking-uri") from None
    return client


def _check_existing_store(uri: str) -> None:
    """Like `check_tracking_uri`, and an SQLite store must exist: a report reads runs, so a
    mistyped path is an error, not a new empty database."""
    from ..tracking import check_tracking_uri

    check_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri.split("?", 1)[0][len("sqlite:///"):])
        if not path.is_file():
            raise StudyError(f"tracking URI {uri!r}: no MLflow database at {path}")
