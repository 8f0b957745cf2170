"""The paper's figures redrawn from a study's measured data: a study's `Figure` (studies.spec)
says what to draw, values averaged over seeds. "lines": final valid full cost (solid) and KL
(dashed) against x, a line per series (Fig 4, 5, 6); "bars": stacked reconstruction and KL
per value of x (Table 2); "curves": training (solid) and validation (dashed) reconstruction
against the step, a line per series (Fig 3); "measures": a panel each for z gain, KL, MI,
active units and the IW bound, a bar per value of x with the seed spread (remedies);
"pareto": Optuna's Pareto front and parameter importances (search studies). "lines",
"bars" and "curves" take a panel per value of `panel`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..spec import Figure, Study
from . import points
from .points import is_number
from .read import StudyResults, ordered

BPC = "Bits per character"
AXIS_LABELS = {
    "length": "Text fragment size, characters",
    "alpha": "α, weight of the auxiliary cost",
    "depth": "Number of convolutional layers",
    "dropout": "Input dropout p",
    "step": "Iteration",
}


def figure_files(study: Study) -> list[str]:
    """The PNG files a study's report draws."""
    spec = study.figure
    if spec is None:
        return []
    if spec.kind == "pareto":
        return ["pareto_front.png", "param_importances.png"]
    return [(re.sub(r"[^a-z0-9]+", "", study.reproduces.lower()) or "figure") + ".png"]


def draw_figures(results: StudyResults, out: Path) -> tuple[list[str], list[str]]:
    """Draw the study's figure into `out`; returns the files written and notes on anything
    that could not be drawn."""
    spec = results.study.figure
    if spec is None:
        return [], [f"study {results.study.name} declares no figure"]
    if spec.kind == "pareto":
        return _draw_pareto(results, out)
    name = figure_files(results.study)[0]
    draw = {
        "lines": _draw_lines,
        "bars": _draw_bars,
        "curves": _draw_curves,
        "measures": _draw_measures,
    }
    fig = draw[spec.kind](results, spec)
    fig.savefig(out / name, dpi=110)
    return [name], []


def _title(results: StudyResults, what: str) -> str:
    return f"{what}\nstudy {results.study.name}, preset {results.preset}, corpus {results.corpus}"


def _panels(
    results: StudyResults, rows: Sequence[Mapping[str, Any]], panel: str | None
) -> list[Any]:
    values = ordered(results.study, panel, [r.get(panel) for r in rows]) if panel else []
    return values or [None]


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


def _dress_axes(
    ax,
    spec: Figure,
    panel: Any,
    xlabel: str,
    ylabel: str,
    empty: str | None,
    grid_axis: str = "both",
) -> None:
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
    return [p for p in points.average(results.summary) if p["status"] == "ok"]


def _draw_lines(results: StudyResults, spec: Figure):
    """Full cost (solid) and KL (dashed) against x, one colour per series value (Fig 4-6)."""
    study, points = results.study, _usable_points(results)
    panels = _panels(results, points, spec.panel)
    fig, axes = _new_figure(len(panels))
    series = ordered(study, spec.series, [p.get(spec.series) for p in points])
    colours = {s: f"C{i % 10}" for i, s in enumerate(series)}
    for ax, panel in zip(axes, panels):
        handles = []
        for s in series:
            pts = sorted(
                (
                    p
                    for p in points
                    if p.get(spec.series) == s
                    and is_number(p.get(spec.x))
                    and (panel is None or p.get(spec.panel) == panel)
                ),
                key=lambda p: p[spec.x],
            )
            if not pts:
                continue
            xs = [p[spec.x] for p in pts]
            (line,) = ax.plot(
                xs,
                [p["total_bpc"] for p in pts],
                "-o",
                color=colours[s],
                label=_label(spec.series, s),
            )
            ax.plot(xs, [p["kl_bpc"] for p in pts], "--s", color=colours[s], markersize=4)
            handles.append(line)
        _dress_axes(
            ax,
            spec,
            panel,
            AXIS_LABELS.get(spec.x, spec.x),
            BPC,
            None if handles else "no completed trials",
        )
        _style_legend(ax, handles, (("-", "full cost (solid)"), ("--", "KL (dashed)")))
    fig.suptitle(_title(results, f"{study.reproduces}: {study.title}"))
    return fig


def _draw_bars(results: StudyResults, spec: Figure):
    """Reconstruction and KL stacked (their sum is the full cost) per value of x (Table 2)."""
    study, points = results.study, _usable_points(results)
    panels = _panels(results, points, spec.panel)
    fig, axes = _new_figure(len(panels))
    for ax, panel in zip(axes, panels):
        pts = [p for p in points if panel is None or p.get(spec.panel) == panel]
        cats = ordered(study, spec.x, [p.get(spec.x) for p in pts])
        by_cat = {c: next(p for p in pts if p.get(spec.x) == c) for c in cats}
        pos = list(range(len(cats)))
        rec = [by_cat[c]["rec_bpc"] for c in cats]
        kl = [by_cat[c]["kl_bpc"] for c in cats]
        ax.bar(pos, rec, color="C0", label="reconstruction")
        ax.bar(pos, kl, bottom=rec, color="C1", hatch="//", label="KL")
        for i, (r, k) in enumerate(zip(rec, kl)):
            ax.annotate(f"{r + k:.3f}", (i, r + k), ha="center", va="bottom", fontsize="small")
        ax.set_xticks(pos, [_label(spec.x, c) for c in cats], rotation=15 if len(cats) > 3 else 0)
        _dress_axes(
            ax,
            spec,
            panel,
            AXIS_LABELS.get(spec.x, spec.x),
            BPC,
            None if cats else "no completed trials",
            grid_axis="y",
        )
        top = max((r + k for r, k in zip(rec, kl) if is_number(r + k)), default=0.0)
        if top > 0:  # headroom for the totals written above the bars and for the legend
            ax.set_ylim(top=top * 1.3)
        ax.legend(
            fontsize="small",
            title="full cost = sum",
            title_fontsize="small",
            loc="upper center",
            ncols=2,
        )
    fig.suptitle(_title(results, f"{study.reproduces}: {study.title}"))
    return fig


MEASURE_PANELS = (
    ("z_gain_bpc", "z gain, bits/char"),
    ("kl_bpc", "KL, bits/char"),
    ("mi", "MI, nats"),
    ("active_units", "active units"),
    ("iw_nll_bpc", "IW bound, bits/char"),
)


def _draw_measures(results: StudyResults, spec: Figure):
    """A panel per measure (z gain, KL, MI, active units, IW bound), a bar per value of x at
    the mean over seeds, the min-max over seeds as error bars; one colour per model (the
    part of x before "+")."""
    study = results.study
    rows = [r for r in results.summary if r["status"] in points.USABLE]
    cats = ordered(study, spec.x, [r.get(spec.x) for r in rows])
    models = list(dict.fromkeys(str(c).split("+")[0] for c in cats))
    fig, axes = _new_figure(len(MEASURE_PANELS))
    fig.set_size_inches(4.2 * len(MEASURE_PANELS), 5.2)
    for ax, (measure, label) in zip(axes, MEASURE_PANELS):
        value = points.DERIVED.get(measure, lambda r, m=measure: r.get(m))
        spread = [
            [v for v in (value(r) for r in rows if r.get(spec.x) == c) if is_number(v)]
            for c in cats
        ]
        means = [sum(v) / len(v) if v else float("nan") for v in spread]
        err = [
            [m - min(v) if v else 0 for m, v in zip(means, spread)],
            [max(v) - m if v else 0 for m, v in zip(means, spread)],
        ]
        colours = [f"C{models.index(str(c).split('+')[0]) % 10}" for c in cats]
        ax.bar(range(len(cats)), means, yerr=err, color=colours, capsize=3)
        ax.set_xticks(
            range(len(cats)), [str(c) for c in cats], rotation=60, ha="right", fontsize="small"
        )
        _dress_axes(
            ax, spec, None, "", label, None if cats else "no completed trials", grid_axis="y"
        )
        ax.set_title(label, fontsize="medium")
    fig.suptitle(
        _title(results, f"{study.reproduces}: {study.title} (mean over seeds, min-max bars)")
    )
    return fig


def _draw_curves(results: StudyResults, spec: Figure):
    """Training (solid) and validation (dashed) reconstruction against the step, a line per
    series value and a panel per panel value (Fig 3); for words, the NLL per sentence. Every
    trial is drawn, failed ones too."""
    study = results.study
    by_key = {r["trial_key"]: r for r in results.summary}
    history: dict[str, list[dict]] = {}
    for r in results.trials.to_pylist():
        if r.get("trial_key") in by_key and "split" in r:
            history.setdefault(r["trial_key"], []).append(r)
    trials = [r for r in results.summary if r["trial_key"] in history]  # in the study's grid order
    words = any(is_number(r.get("nll_nats")) for rows in history.values() for r in rows)
    y, y_label = ("nll_nats", "nats per sentence (NLL)") if words else ("rec_bpc", None)
    panels = _panels(results, trials, spec.panel)
    fig, axes = _new_figure(len(panels))
    series = (
        ordered(study, spec.series, [t.get(spec.series) for t in trials]) if spec.series else [None]
    )
    colours = {s: f"C{i % 10}" for i, s in enumerate(series)}
    for ax, panel in zip(axes, panels):
        handles, labelled = [], set()
        for t in trials:
            if panel is not None and t.get(spec.panel) != panel:
                continue
            s = t.get(spec.series) if spec.series else None
            rows = sorted(history[t["trial_key"]], key=lambda r: r["step"])
            for split, style in (("train", "-"), ("valid", "--")):
                pts = [
                    (r["step"], r[y]) for r in rows if r["split"] == split and is_number(r.get(y))
                ]
                if not pts:
                    continue
                (line,) = ax.plot(
                    *zip(*pts),
                    style,
                    color=colours.get(s, "C0"),
                    label=_label(spec.series, s) if spec.series else "trial",
                )
                if split == "train" and s not in labelled:
                    labelled.add(s)
                    handles.append(line)
        _dress_axes(
            ax,
            spec,
            panel,
            AXIS_LABELS["step"],
            y_label or f"{BPC} (reconstruction)",
            None if handles else "no reports",
        )
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
    search.quiet()  # no "A new study created in memory" INFO line on the terminal
    ostudy = optuna.create_study(
        directions=["minimize"] * len(names) if lower_is_better else directions
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ostudy.set_metric_names(
            [
                f"{n} ({'high' if s < 0 else 'low'})" if lower_is_better else n
                for n, s in zip(names, signs)
            ]
        )
    dists = search.distributions(study, study.grid_for(results.preset) if study.is_grid else None)
    for row in results.summary:
        values = [row.get(n.split("/", 1)[-1]) for n in names]
        if row.get("status") not in points.USABLE or not all(is_number(v) for v in values):
            continue
        params = {k: row[k] for k in dists if k in row}
        try:
            ostudy.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions={k: dists[k] for k in params},
                    values=[s * v for s, v in zip(signs, values)],
                )
            )
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
    plots = (
        (
            "pareto_front.png",
            lambda: ovm.plot_pareto_front(front, target_names=names),
            "Pareto front",
        ),
        (
            "param_importances.png",
            lambda: ovm.plot_param_importances(ranked),
            "Parameter importances (for a low or a high value of each metric)",
        ),
    )
    for name, plot, what in plots:
        # Optuna's plots switch pyplot to its "ggplot" style globally; rc_context undoes that.
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # handled: see `ranked`
            warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes")
            # a study without completed trials
            warnings.filterwarnings("ignore", "No artists with labels")
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
