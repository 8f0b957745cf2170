"""report.md and summary.parquet: the claims with their per-seed verdicts, the figure, and
a table of every trial."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pyarrow as pa

from textvae_core.config import BN_EPS

from .points import MEASURES, Verdict, is_number
from .read import StudyResults, swept


def summary_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns and k != "history"]
    if not columns:
        columns = ["study", "preset", "trial_key", "status", *MEASURES]
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


def compute_line(c: Mapping[str, Any] | None) -> str:
    """The slot utilisation of a study's driver runs and where its trials' time went."""
    if c is None:
        return "Not recorded: study.json has no driver run with its start, end and concurrency."
    at_once = "/".join(str(n) for n in c["concurrency"])
    killed = (
        f" ({c['estimated']} killed, taken to end at its last trial event)"
        if c["estimated"]
        else ""
    )
    use = f"{c['utilisation']:.0%}" if c["utilisation"] is not None else "-"
    text = (
        f"{c['driver_runs']} driver run(s){killed}, {c['wall_s'] / 60:.1f} min of wall time at "
        f"{at_once} trial(s) at once; compute of the {c['trials']} trial(s) that ended in them "
        f"{c['trial_s'] / 60:.1f} min: slot utilisation {use} (trial compute over wall time times "
        "concurrency)."
    )
    split = c["split"]
    if split:
        final = (
            f" (the final IW bound and MI pool {split['final']:.1%} of it)"
            if "final" in split
            else ""
        )
        parts = [
            f"{k} {split[k]:.1%}" + (final if k == "eval" else "")
            for k in ("train", "eval", "checkpoint", "report")
            if k in split
        ]
        text += f" Trial time: {', '.join(parts)}; the rest is start-up (data, model, resume)."
    return text


def _trial_label(row: Mapping[str, Any], names: Sequence[str]) -> str:
    """A trial by its swept values (its key if it has none)."""
    return ", ".join(f"{k}={_fmt(row[k])}" for k in names if k in row) or row["trial_key"]


def aggressive_lines(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """What aggressive training cost each trial that used it: its encoder-only updates on top
    of the `steps` decoder updates, their seconds, and how long the mode lasted."""
    rows = [r for r in rows if is_number(r.get("encoder_updates"))]
    if not rows:
        return []
    lines = [
        "",
        (
            "Aggressive training (encoder-only updates on top of the decoder updates that "
            "`steps` counts):"
        ),
        "",
    ]
    for r in rows:
        name = _trial_label(r, names)
        share, wall = "", r.get("wall_s")
        if is_number(wall) and wall > 0 and wall >= r["encoder_s"]:
            share = f", {r['encoder_s'] / wall:.0%} of its {wall:.0f} s"
        elif is_number(wall) and wall > 0:
            # recorded before a resumed trial's wall time counted its earlier processes
            share = f" (its wall time, {wall:.0f} s, counts only its last process)"
        lines.append(
            f"- {name}: {r['encoder_updates']:.0f} encoder updates through step "
            f"{r['aggressive_until']:.0f} (aggressive mode on until then), "
            f"{r['encoder_s']:.0f} s{share}"
        )
    return lines


def remedy_lines(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """The trials whose remedy did not do what it promises: a BN-VAE trial whose final KL is
    below its floor (gamma^2 Z / 2 nats per fragment, in bits/char), with the reason, and a
    free-bits trial with no latent dimension at the floor at any report (it never engaged)."""
    found = []
    for r in rows:
        name = _trial_label(r, names)
        floor, kl, var = r.get("bn_kl_floor_bpc"), r.get("kl_bpc"), r.get("bn_mu_var")
        if is_number(floor) and is_number(kl) and kl < floor:
            if not is_number(var):
                why = "the variance of mu entering the BatchNorm was not recorded"
            elif var < BN_EPS:
                why = (
                    f"the variance of mu entering the BatchNorm ({var:.2g}) fell below its eps "
                    f"({BN_EPS:g}), so the BatchNorm no longer fixes the means' spread"
                )
            else:
                why = (
                    f"the variance of mu entering the BatchNorm ({var:.2g}) is above its eps "
                    f"({BN_EPS:g}); the floor holds for a batch's own statistics, and evaluation "
                    "uses the running ones"
                )
            found.append(
                f"- {name}: KL {kl:.4g} bits/char is below BN-VAE's floor {floor:.4g} "
                f"(gamma^2 Z / 2 nats per fragment): {why}"
            )
        if r.get("free_bits_active_max") == 0:
            found.append(
                f"- {name}: free bits never engaged: no latent dimension was at the floor at any "
                "report (train/free_bits_active 0), so it trained on the plain objective"
            )
    if not found:
        return []
    return ["", "Remedies that did not do what they promise:", "", *found]


# A valid KL this high in a run with no KL term means the posterior ran away from the prior:
# the no-KL runs in results/historyless end at 3-260 bits/char (small sigmas), while the conv
# at L=50 and batch 32 read 1e8 to 1e11 (sigmas of 1e5-1e6: z was noise to the decoder).
RUNAWAY_KL_BPC = 1e4


def runaway_lines(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """The trials trained with no KL term (kl=False) whose posterior ran away at some report:
    nothing holds the encoder's means and variances there, and a valid KL of
    `RUNAWAY_KL_BPC` or more says z was noise to the decoder (the Fig 3 conv at batch 32)."""
    found = []
    for r in rows:
        if r.get("kl") is not False:
            continue
        kls = {s: m.get("kl_bpc") for s, m in (r.get("history") or {}).items()}
        kls = {s: v for s, v in kls.items() if is_number(v)}
        high = sorted(s for s, v in kls.items() if v >= RUNAWAY_KL_BPC)
        if high:
            peak = max(high, key=kls.get)
            found.append(
                f"- {_trial_label(r, names)}: with no KL term its posterior ran away from the "
                f"prior at steps {high[0]}-{high[-1]} (valid KL up to {kls[peak]:.3g} bits/char "
                f"at step {peak}): z was noise to the decoder there"
            )
    if not found:
        return []
    return ["", "Posteriors that ran away (no KL term holds them):", "", *found]


def lstm_label(row: Mapping[str, Any]) -> str | None:
    """A trial's LSTM: its cell, and whether z reaches every decoder step (None: no LSTM)."""
    cell = row.get("lstm_cell")
    if not cell:
        return None
    return f"{cell}, z every step" if row.get("z_every_step") else cell


def render_markdown(
    results: StudyResults,
    verdicts: Sequence[Mapping[str, Any]],
    figures: Sequence[str],
    notes: Sequence[str],
) -> str:
    study = results.study
    counts: dict[str, int] = {}
    for r in results.summary:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines = [
        f"# {study.name}: {study.title}",
        "",
        *(
            [f"Reproduces {study.reproduces} of Semeniuta et al. (2017).  "]
            if study.reproduces != "search"
            else []
        ),
        f"Study `{study.name}`, preset `{results.preset}`, corpus `{results.corpus}`: "
        f"{len(results.summary)} trials "
        f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'none'}).  ",
        f"Read from {results.source}"
        + (f"; MLflow parent run `{results.parent_run_id}`." if results.parent_run_id else "."),
        "",
    ]
    if results.preset == "smoke":
        lines += [
            "> **Smoke preset: these verdicts check the plumbing, not the paper.** Tiny models "
            "train for seconds on a synthetic corpus; run `--preset cpu` or `paper` to test the "
            "claims.",
            "",
        ]
    lines += ["## Claims", ""]
    if verdicts:
        lines += [
            "| claim | measured: mean [min, max] over seeds | threshold | per seed | verdict |",
            "|---|---|---|---|---|",
        ]
        for v in verdicts:
            measured = (
                "<br>".join(
                    f"{k}: {_fmt(x)}"
                    + (
                        f" [{_fmt(v['spread'][k][0])}, {_fmt(v['spread'][k][1])}]"
                        if len(v["seeds"]) > 1 and v["spread"].get(k)
                        else ""
                    )
                    for k, x in v["measured"].items()
                )
                or "-"
            )
            seeds = "<br>".join(
                f"seed {p['seed']}: {p['verdict']}" + (f" ({p['note']})" if p["note"] else "")
                for p in v["seeds"]
            )
            verdict = f"**{v['verdict']}**" + (
                f" ({v['note']})" if v["verdict"] == Verdict.UNSTABLE else ""
            )
            if len(v["seeds"]) == 1:
                verdict += " (single seed)"
            controls = "".join(f"<br>control: {c['text']}" for c in v["controls"])
            lines.append(
                f"| `{v['id']}`: {_cell(v['text'])}{_cell(controls)} | {_cell(measured)} "
                f"| {_cell(v['threshold'])} | {_cell(seeds)} | {_cell(verdict)} |"
            )
        lines += [
            "",
            "Thresholds come from the study file and were fixed before any run. Each seed is "
            "judged on its own: INCONCLUSIVE means a trial the claim needs is missing or failed, "
            "or a control failed (the preset cannot test the claim). Over seeds, agreement gives "
            "that verdict and any mix is UNSTABLE.",
        ]
    else:
        lines.append(f"Study `{study.name}` declares no claims.")
    lines += ["", "## Figure", ""]
    lines += [f"![{name}]({name})" for name in figures] + [f"- {n}" for n in notes]
    ceilings = sorted(
        {round(r["mi_max"], 3) for r in results.summary if is_number(r.get("mi_max"))}
    )
    pools = sorted(
        {round(r["mi_pool_max"], 3) for r in results.summary if is_number(r.get("mi_pool_max"))}
    )
    mi_note = (
        "MI is I(x; z) in nats (He et al. 2019), estimated on the N validation fragments of a "
        f"report and never above log N ({', '.join(map(str, ceilings))} here): a value marked "
        "(cap) means at least that much."
        if ceilings
        else "MI is I(x; z) in nats (He et al. 2019)."
    )
    if pools:
        mi_note += (
            " MI pool is the final estimate over a larger pool of fragments, capped at its own "
            f"log N ({', '.join(map(str, pools))})."
        )
    lines += ["", "## Compute", "", compute_line(results.compute)]
    lines += aggressive_lines(results.summary, swept(study, results.preset))
    lines += remedy_lines(results.summary, swept(study, results.preset))
    lines += runaway_lines(results.summary, swept(study, results.preset))
    if any(is_number(r.get("nll_nats")) for r in results.summary):
        lines += word_trial_lines(results.summary, swept(study, results.preset))
        return "\n".join(lines) + "\n"
    lstm = any(lstm_label(r) for r in results.summary)  # a column only where a trial has an LSTM
    header = [
        "trial",
        *(["LSTM"] if lstm else []),
        "status",
        "total",
        "rec",
        "KL",
        "aux",
        "active units",
        "MI",
        "z gain",
        "IW bound",
        "MI pool",
        "unigram",
        "steps",
        "wall s",
        "chars/s",
    ]
    lines += [
        "",
        "## Trials",
        "",
        f"Final validation metrics in bits per character, but for MI. {mi_note} "
        "z gain is the reconstruction cost with another fragment's z minus that with its own: "
        "~0 when the decoder ignores z, whatever the KL."
        + (
            " LSTM is the trial's LSTM cell (and whether z reaches every decoder step)."
            if lstm
            else ""
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    names = swept(study, results.preset)
    if len({r.get("seed") for r in results.summary}) < 2:
        names = [k for k in names if k != "seed"]
    for r in results.summary:
        speed = round(r["chars_per_s"]) if is_number(r["chars_per_s"]) else None
        name = _trial_label(r, names)
        measures = [r[m] for m in MEASURES]
        if (
            is_number(r["mutual_info"])
            and is_number(r.get("mi_max"))
            and r["mutual_info"] >= r["mi_max"] - 5e-3
        ):
            measures[MEASURES.index("mutual_info")] = f"{_fmt(r['mutual_info'])} (cap)"
        cells = [name, *([lstm_label(r)] if lstm else []), r["status"], *measures]
        cells += [r["steps"], r["wall_s"], speed]
        lines.append("| " + " | ".join(_cell(_fmt(c)) for c in cells) + " |")
    return "\n".join(lines) + "\n"


WORD_COLUMNS = (  # (summary column, header) of a word corpus's trials table
    ("nll_nats", "valid NLL"),
    ("rec_nats", "rec"),
    ("kl_nats", "KL"),
    ("ppl", "PPL"),
    ("active_units", "active units"),
    ("mutual_info", "MI"),
    ("test_nll_nats", "test NLL"),
    ("test_kl_nats", "test KL"),
    ("test_ppl", "test PPL"),
    ("test_iw_nll_nats", "test IW NLL"),
    ("test_iw_ppl", "test IW PPL"),
    ("test_mutual_info", "test MI"),
    ("test_active_units", "test AU"),
    ("unigram_nats", "unigram"),
    ("selected_step", "selected step"),
    ("plateau_decays", "lr decays"),
    ("steps", "steps"),
    ("wall_s", "wall s"),
    ("tokens_per_s", "tokens/s"),
)


def word_trial_lines(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """The trials table of a word corpus's study: nats per sentence and perplexity."""
    lines = [
        "",
        "## Trials",
        "",
        "Final metrics of the model each trial selected (the best valid NLL's, `selected step`), "
        "on the whole valid split and, once, the test split. NLL is the negative ELBO, rec + KL, "
        "in nats per sentence (words and the end token summed); PPL is per token, end tokens "
        "counted: exp(total NLL / tokens). The IW bound uses the K samples and sentences the "
        "preset sets. MI is I(x; z) in nats. unigram is the valid NLL of the training tokens' "
        "frequencies alone.",
        "",
        "| trial | status | " + " | ".join(h for _, h in WORD_COLUMNS) + " |",
        "|" + "---|" * (len(WORD_COLUMNS) + 2),
    ]
    for r in rows:
        cells = [_trial_label(r, names), r["status"], *(r.get(c) for c, _ in WORD_COLUMNS)]
        lines.append("| " + " | ".join(_cell(_fmt(c)) for c in cells) + " |")
    return lines
