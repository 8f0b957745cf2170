"""One trial of a study, independent of Ray: read its config (the driver wrote it), resume
checkpoint, train with `textvae_core.fit`, and hand each report to a `report` function
(the Ray adapter passes one that calls `tune.report`).

A trial is identified by its key (a hash of its sweep point), so a retried or resumed
trial finds its checkpoint and its MLflow run again.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from textvae_core import CheckpointError, DivergenceError, Trainer, fit, history_table
from textvae_core.checkpoint import check_checkpoint
from textvae_core.sampling import interpolate, reconstruct, sample_prior

from textvae_core.measures import SPLITS, key as metric_key, prefix

from ..spec import Study, trial_key
from ..store import Status, StudyStore
from .configs import read_trial_config
from .system import SystemSampler


KL = metric_key("valid", "kl_bpc")  # the collapse rule reads character trials only
log = logging.getLogger(__name__)
METRIC_PREFIXES = tuple(prefix(s) for s in SPLITS)


def is_metric(name: str) -> bool:
    return name.startswith(METRIC_PREFIXES) or name == "lr"


@dataclass(frozen=True)
class TrialReport:
    """What a trial tells the driver at each evaluation (the Ray adapter carries it)."""

    step: int  # -1: training never reached a report (it diverged first)
    metrics: Mapping[str, float]  # "train/...", "valid/..." (final, words: "test/...") and "lr"
    final: bool = False  # its last report: the trial is over
    # why training could not go on: a non-finite loss, no readable checkpoint
    failure: str | None = None
    replayed: Status | None = None  # a finished trial handed out again: the status it has
    samples: str | None = None  # (final only) decoded samples and reconstructions
    collapsed: str | None = None  # (final only) why it stopped early as collapsed (CollapseRule)
    # cumulative seconds the trial's code ran, over every process that ran it: a trial that
    # continues from a checkpoint adds those of the processes before, as of that checkpoint
    wall_s: float = 0.0
    # Where wall_s went, cumulative like it: "train" and "eval" (the Trainer's own clocks;
    # "final": the last report's share of eval), "checkpoint" (saving, uploading, the history
    # table) and "report" (samples and the hand-off to the driver).
    seconds: Mapping[str, float] | None = None
    # the worker process's `system/` measures since its previous report (studies.run.system)
    system: Mapping[str, float] | None = None


@dataclass(frozen=True)
class CollapseRule:
    """When a report counts as collapsed: once the KL weight is 1, the valid KL, MI and z gain
    are all under their thresholds. KL alone is not enough: free bits and BN-VAE hold it up
    by construction, and a small KL can still carry what the decoder reads. A metric a
    report lacks does not hold the trial up. A trial stops after `patience` such reports in a
    row, and that last report becomes its final one (IW bound, MI pool, samples): a collapsed
    trial's bound is measured like any other's."""

    kl: float = 0.005  # bits/char
    mi: float = 0.05  # nats
    z_gain: float = 0.02  # bits/char
    patience: int = 3

    def collapsed(self, metrics: Mapping[str, float]) -> str | None:
        """Why this report counts as collapsed, or None."""
        if metrics.get(metric_key("train", "kl_weight"), 0.0) < 1.0 or KL not in metrics:
            return None  # annealing, or a word corpus's trial (its plateau schedule ends it)
        measured = {
            "valid kl_bpc": (metrics.get(KL), self.kl),
            "MI (nats)": (metrics.get(metric_key("valid", "mutual_info")), self.mi),
            "z gain (bits/char)": (metrics.get(metric_key("valid", "z_gain_bpc")), self.z_gain),
        }
        known = {
            k: (v, t)
            for k, (v, t) in measured.items()
            if isinstance(v, (int, float)) and math.isfinite(v)
        }
        if not known or any(v >= t for v, t in known.values()):
            return None
        return ", ".join(f"{k} {v:.4f} < {t}" for k, (v, t) in known.items())

    def stop(self, history: Sequence[Any]) -> str | None:
        """Why the run with these reports (oldest first) stops as collapsed, or None: its last
        `patience` reports all count as collapsed. Read from the whole history, so a resumed
        trial counts the reports before its restart."""
        last = history[-self.patience :]
        whys = [self.collapsed(r.metrics) for r in last]
        if len(last) < self.patience or not all(whys):
            return None
        return (
            f"KL collapsed: {whys[-1]} for {self.patience} reports after annealing "
            f"(step {last[-1].step})"
        )


def outcome(last: TrialReport | None, error: str | None = None) -> tuple[Status, str | None]:
    """The one place a trial's status is decided, from what the driver saw of it: its last
    report (final, collapsed, failed, replayed) and the error of a crash it did not survive."""
    if error is not None:
        return Status.FAILED, error
    if last is not None and last.collapsed is not None:
        return Status.COLLAPSED, last.collapsed
    if last is not None and last.replayed is not None:
        return last.replayed, "already finished"
    if last is not None and last.failure is not None:
        return Status.FAILED, last.failure
    if last is not None and last.final:
        return Status.COMPLETED, None
    return Status.STOPPED, "stopped early by the scheduler (ASHA)"


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sweep point; shipped to workers once."""

    study: Study
    preset: str
    storage: str  # the study folder URI
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set values
    seed: int = 0
    threads: int = 1
    collapse: CollapseRule | None = None  # None: no trial stops early as collapsed

    def make_config(self, params: Mapping[str, Any]):
        """Build a trial's config: only the driver's `TrialConfigs` calls this, once a trial."""
        extra = {**self.overrides, "threads": self.threads}
        if "seed" not in params:
            extra["seed"] = self.seed
        return self.study.trial_config(self.preset, params, extra)


Report = Callable[[TrialReport, Path | None], None]  # (report, checkpoint folder or None)


def run_trial(
    params: Mapping[str, Any],
    ctx: TrialContext,
    report: Report,
    restored_checkpoint: Path | None = None,
) -> None:
    """Train one trial to its last step (or continue it), reporting every evaluation."""
    key = trial_key(params)
    store = StudyStore(ctx.storage)
    config = read_trial_config(store, key)
    record = store.trial(key)
    if record is not None and record.finished and record.final:
        # Handed out again (a searcher replaying a finished point): report what it measured.
        report(
            TrialReport(
                record.last_step if record.last_step is not None else -1,
                record.final,
                final=True,
                replayed=record.status,
            ),
            None,
        )
        return
    work = Path(tempfile.mkdtemp(prefix=f"vaestudy-{key}-"))
    try:
        started = time.perf_counter()
        try:
            resume = resume_point(store, key, restored_checkpoint, work)
        except CheckpointError as exc:
            report(
                TrialReport(
                    -1, {n: math.nan for n in ctx.study.metrics}, final=True, failure=str(exc)
                ),
                None,
            )
            return
        sent = {"step": -1}
        spent = {"checkpoint": 0.0, "report": 0.0}
        # The trial's own clocks ride in the Trainer's checkpointed `seconds`, so a trial that
        # continues from a checkpoint (a killed driver, a lost node) adds up the seconds of
        # every process that ran it; `base`: theirs as of the checkpoint this one started from.
        base: dict[str, float] = {}

        def wall(trainer: Trainer | None = None) -> float:
            if trainer is not None and not base:
                base.update({k: trainer.seconds.get(k, 0.0) for k in ("wall", *spent)})
            return base.get("wall", 0.0) + time.perf_counter() - started

        def clocks(trainer: Trainer, reporting: float = 0.0) -> dict[str, float]:
            """Set the trial's clocks in `trainer.seconds`; where its wall time went."""
            total = wall(trainer)
            now = {**spent, "report": spent["report"] + reporting}
            trainer.seconds.update({k: base[k] + v for k, v in now.items()}, wall=total)
            return {k: v for k, v in trainer.seconds.items() if k != "wall"}

        rule = ctx.collapse
        collapsed = {"why": None}
        system = SystemSampler()

        def on_report(rep, trainer: Trainer) -> bool:
            if not rep.final and rule is not None and (why := rule.stop(trainer.history)):
                collapsed["why"] = why
                return True  # fit makes this report final and hands it back
            t0 = time.perf_counter()
            ckpt_dir = work / f"ckpt-{rep.step}"
            clocks(trainer)  # saved with the checkpoint
            trainer.save(ckpt_dir / "checkpoint.pt")
            store.save_checkpoint(key, ckpt_dir / "checkpoint.pt")
            store.write_table(f"trials/{key}/history.parquet", history_table(trainer.history))
            t1 = time.perf_counter()
            spent["checkpoint"] += t1 - t0
            extras = final_extras(trainer) if rep.final else {}
            # the hand-off itself is counted in the next report
            seconds = clocks(trainer, reporting=time.perf_counter() - t1)
            report(
                TrialReport(
                    rep.step,
                    rep.metrics,
                    final=rep.final,
                    **extras,
                    wall_s=trainer.seconds["wall"],
                    collapsed=collapsed["why"] if rep.final else None,
                    seconds=seconds,
                    system=system.sample(),
                ),
                ckpt_dir,
            )
            sent["step"] = rep.step
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            spent["report"] += time.perf_counter() - t1
            return False

        try:
            trainer = fit(config, on_report=on_report, resume_from=resume)
        except DivergenceError as exc:
            report(
                TrialReport(
                    -1,
                    {n: math.nan for n in ctx.study.metrics},
                    final=True,
                    failure=str(exc),
                    wall_s=wall(),
                ),
                None,
            )
            return
        if sent["step"] < 0 and trainer.history:
            # Resumed at its final report (the driver died after the final checkpoint): it is
            # re-sent so the study records the trial as complete, or as collapsed.
            rep = trainer.history[-1]
            early = rep.step < config.steps and not trainer.stopped  # not the plateau's end
            why = rule.stop(trainer.history) if rule is not None and early else None
            report(
                TrialReport(
                    rep.step,
                    rep.metrics,
                    final=True,
                    **final_extras(trainer),
                    collapsed=why,
                    wall_s=wall(trainer),
                ),
                None,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def resume_point(store: StudyStore, key: str, restored: Path | None, work: Path) -> Path | None:
    """The newest readable checkpoint of a trial: Ray's restored one, else the store's latest,
    else the one before it. None for a fresh trial; CheckpointError when every one is damaged."""
    candidates = ([restored] if restored is not None else []) + [
        store.download(rel, work / f"resume-{i}.pt") for i, rel in enumerate(store.checkpoints(key))
    ]
    problems = []
    for path in candidates:
        try:
            check_checkpoint(path)
            if problems:
                log.warning(
                    "trial %s resumes from an older checkpoint: %s", key, "; ".join(problems)
                )
            return path
        except CheckpointError as exc:
            problems.append(str(exc))
    if problems:
        raise CheckpointError(f"no readable checkpoint to resume from: {'; '.join(problems)}")
    return None


def final_extras(trainer: Trainer) -> dict[str, str]:
    """Decoded samples from the prior (greedy and at temperature 1), reconstructions of fixed
    validation fragments and an interpolation between two of them, by the functions
    `vaestudy sample` uses."""
    model, vocab, cfg = trainer.model.eval(), trainer.vocab, trainer.config
    with torch.no_grad():
        greedy = sample_prior(model, vocab, 8, temperature=0.0, seed=cfg.seed)
        warm = sample_prior(model, vocab, 8, temperature=1.0, seed=cfg.seed)
        x = trainer.evaluator.validation_batches()[0][:6].cpu()
        originals = [vocab.decode(row) for row in x]
        recon = reconstruct(model, vocab, originals)
        path = (
            interpolate(model, vocab, originals[0], originals[1], steps=5)
            if len(originals) > 1
            else []
        )
    show = lambda s: s.replace("\n", "\\n")  # noqa: E731
    lines = ["# samples from the prior (greedy)"] + [show(s) for s in greedy]
    lines += ["", "# samples from the prior (temperature 1)"] + [show(s) for s in warm]
    lines += ["", "# reconstructions of validation fragments (input -> output)"]
    lines += [f"{show(a)}  ->  {show(b)}" for a, b in zip(originals, recon)]
    if path:
        lines += ["", "# interpolation between the first two fragments' posterior means (greedy)"]
        lines += [show(s) for s in path]
    return {"samples": "\n".join(lines) + "\n"}
