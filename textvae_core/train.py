"""A plain training loop: `fit(config, on_report=...)` runs without Ray.

Adam with the paper's step decay, KL annealing, input dropout, aggressive encoder updates
when asked for, a report every `eval_every` steps (training bits per character and the
held-out measures of `evaluation`), and checkpoints that hold every piece of state (model,
optimiser, step, data sampler, RNGs), so a run resumed from one continues bit-identically
on the CPU. The reports and their table are in `history`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Callable

import torch

from .aggressive import inner_loop_done, mode_ends, steps_per_epoch
from .checkpoint import CHECKPOINT_FORMAT, check_format, read_checkpoint
from .config import TrainConfig
from .data import Corpus, load_corpus
from .errors import DataError
from .evaluation import Evaluator, autocast_context, fragment_bits, resolve_device, sentence_nats
from .fragments import FragmentSampler
from .history import Report
from .losses import KLSchedule, vae_objective
from .measures import key, prefixed
from .models import TextVAE, build_model
from .selection import ModelSelection, lr_at
from .tokens import PAD
from .vocab import Vocabulary
from .words import SentenceBatcher

# Fields a resumed run may change; everything else must match the checkpoint.
RESUMABLE_CHANGES = frozenset(
    {"steps", "threads", "device", "iw_samples", "iw_sentences", "eval_batches", "mi_pool"}
)


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite; the message says at which step."""


class Trainer:
    """Owns the model, optimiser, data samplers and RNG for one run."""

    def __init__(self, config: TrainConfig, corpus: Corpus | None = None):
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        self.corpus = corpus or load_corpus(
            config.corpus, tokens=config.tokens, vocab_size=config.vocab_size
        )
        if self.corpus.tokens != config.tokens:
            raise DataError(
                f"corpus {self.corpus.name} has tokens={self.corpus.tokens}, the config "
                f"tokens={config.tokens}: load it with load_corpus(..., tokens={config.tokens!r})"
            )
        self.words = config.tokens == "word"
        torch.manual_seed(config.seed)
        self.model: TextVAE = build_model(config, self.corpus.vocab.size).to(self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8
        )
        self.evaluator = Evaluator(self.model, self.corpus, config, self.device)
        if self.words:
            self.sampler = SentenceBatcher(
                self.corpus.train, config.batch_size, config.seed, self.evaluator.max_len
            )
            epoch = self.sampler.steps_per_epoch
        else:
            self.sampler = FragmentSampler(
                self.corpus.train, config.length, config.batch_size, config.seed
            )
            epoch = steps_per_epoch(len(self.corpus.train), config.length, config.batch_size)
        self.eval_every = config.eval_every or epoch  # 0: one pass over the training data
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.schedule = KLSchedule.of(config)
        self.step = 0
        # sums over the examples (fragments or sentences) since the last report of loss, rec,
        # kl, aux, and the examples and tokens
        self._window = torch.zeros(6, dtype=torch.float64)
        self._window_steps = 0
        self._window_time = 0.0
        # decay on plateau and model selection (`plateau`, `select_best`)
        self.selection = ModelSelection(config, self.model, self.optimizer)
        self.history: list[Report] = []
        self.checkpoint_steps: int | None = None  # after `load`: the `steps` of its run
        self._free_bits_active = 0.0  # sum of the share of dimensions at the floor since the report
        # Aggressive encoder training (He et al. 2019, `aggressive`): on until held-out MI, checked
        # every `aggressive_check_every` steps (0: one pass over the training data), drops.
        self.aggressive_on = config.aggressive
        self.aggressive_check_every = config.aggressive_check_every or epoch
        self._previous_mi = 0.0  # the last check's MI; the first check compares with 0
        self._encoder_updates, self._encoder_time = 0, 0.0
        # Seconds the run spent training (encoder-only updates included) and evaluating, added up
        # over the processes that ran it (they are checkpointed); "final": the last report's share
        # of "eval" (its IW bound and MI pool included). A caller may keep clocks of its own here.
        self.seconds = {"train": 0.0, "eval": 0.0, "final": 0.0}

    @property
    def vocab(self) -> Vocabulary:
        return self.corpus.vocab

    def autocast(self):
        return autocast_context(self.device)

    # --- training ------------------------------------------------------------------------
    def train_step(self) -> None:
        start = time.perf_counter()
        self.model.train()
        x = self.sampler.sample().to(self.device, non_blocking=True)  # (B, L)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        if self.aggressive_on:
            self._train_encoder(x)
        parts = self._objective(x)
        tracked = [parts["loss"], parts["rec"], parts["kl"], parts["aux"]]
        if "free_bits_active" in parts:
            tracked.append(parts["free_bits_active"])
        values = torch.stack(tracked).detach().double().cpu()
        if not torch.isfinite(values).all():
            raise DivergenceError(
                f"loss became {values[0].item()} at step {self.step} "
                f"(rec={values[1].item():.4g}, kl={values[2].item():.4g}, "
                f"aux={values[3].item():.4g}); try a lower lr or grad_clip"
            )
        # While aggressive, this is the decoder's update: the encoder has just had its own.
        self._update(
            parts["loss"], frozen=self.model.encoder_parameters() if self.aggressive_on else ()
        )
        self.step += 1
        self._window += torch.cat(
            [values[:4] * x.shape[0], torch.tensor([x.shape[0], float((x != PAD).sum())])]
        )
        self._free_bits_active += float(values[4:].sum())
        self._window_steps += 1
        elapsed = time.perf_counter() - start
        self._window_time += elapsed
        self.seconds["train"] += elapsed
        if self.aggressive_on and self.step % self.aggressive_check_every == 0:
            self._check_aggressive()
        if self.aggressive_on and self.step == self.config.aggressive_max_steps:
            self.aggressive_on = False  # the budget's cap (0 never matches: steps start at 1)

    def _objective(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.autocast():
            out = self.model(x, self.generator)
        return vae_objective(
            out, x, self.config.alpha, self.schedule.weight_at(self.step), self.config.free_bits
        )

    def _update(self, loss: torch.Tensor, frozen=()) -> None:
        """One optimiser step on `loss`, leaving the parameters in `frozen` unchanged."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for p in frozen:
            p.grad = None  # Adam skips parameters without a gradient
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()

    def _train_encoder(self, x: torch.Tensor) -> None:
        """Encoder-only updates, the first on the decoder's batch x (B, L), the rest on fresh
        batches, until `aggressive.inner_loop_done`: a window of AGGRESSIVE_WINDOW updates whose
        mean loss is higher than the window's before, or `aggressive_max_inner` updates."""
        start = time.perf_counter()
        encoder = {id(p) for p in self.model.encoder_parameters()}
        decoder = [p for p in self.model.parameters() if id(p) not in encoder]
        losses: list[float] = []
        while not inner_loop_done(losses, self.config.aggressive_max_inner):
            batch = self.sampler.sample().to(self.device) if losses else x
            loss = self._objective(batch)["loss"]
            self._update(loss, frozen=decoder)
            losses.append(float(loss.detach()))
        self._encoder_updates += len(losses)
        self._encoder_time += time.perf_counter() - start

    def _check_aggressive(self) -> None:
        """Held-out MI against the previous check's: a strict drop ends aggressive mode."""
        start = time.perf_counter()
        cfg = self.config
        mi = self.evaluator.pool_mutual_info(cfg.mi_pool or cfg.batch_size * cfg.eval_batches)
        if mode_ends(mi, self._previous_mi):
            self.aggressive_on = False
        self._previous_mi = mi
        self.seconds["eval"] += time.perf_counter() - start

    @property
    def lr(self) -> float:
        """The learning rate now: the step decay's (`lr_at`) times the plateau decays'."""
        return lr_at(self.step, self.config) * self.selection.lr_scale

    @property
    def stopped(self) -> bool:
        """The plateau schedule's last decay ended training."""
        return self.selection.stopped

    def train_metrics(self) -> dict[str, float]:
        cfg, n = self.config, max(self._window_steps, 1)
        _, rec, kl, aux, examples, tokens = self._window.tolist()
        speed = tokens / self._window_time if self._window_time > 0 else math.nan
        if self.words:
            m = {**sentence_nats(rec, kl, aux, int(examples), int(tokens), cfg)}
            m["tokens_per_s"] = speed
        else:
            e = max(examples, 1.0)
            m = {**fragment_bits(rec / e, kl / e, aux / e, cfg), "chars_per_s": speed}
        m["kl_weight"] = self.schedule.weight_at(self.step)
        if cfg.free_bits > 0:
            m["free_bits_active"] = self._free_bits_active / n
            self._free_bits_active = 0.0
        if cfg.aggressive:
            m.update(
                aggressive=float(self.aggressive_on),
                encoder_updates=float(self._encoder_updates),
                encoder_s=self._encoder_time,
            )
            self._encoder_updates, self._encoder_time = 0, 0.0
        self._window.zero_()
        self._window_steps, self._window_time = 0, 0.0
        return m

    def report(self, final: bool = False) -> Report:
        """Train and valid measures now. The plateau schedule's last decay (`plateau`) makes
        this report final. A final report adds its final measures (`_final_metrics`)."""
        metrics = prefixed("train", self.train_metrics())
        metrics[key(None, "lr")] = self.lr
        selects = self.selection.active
        valid = self._validate(final and not selects)
        metrics.update(prefixed("valid", valid))
        if selects:
            self.selection.observe(valid, self.step)
        if self.config.plateau:  # with this report's decay, if it made one
            metrics[key("train", "plateau_decays")] = float(self.selection.decays)
        final = final or self.stopped
        if final:
            metrics.update(self._final_metrics(valid_final=not selects))
        rep = Report(self.step, metrics, final)
        self.history.append(rep)
        return rep

    def _final_metrics(self, valid_final: bool) -> dict[str, float]:
        """What only a final report has, measured on the model it reports: with
        `select_best` (or `plateau`) the best valid bound's model, whose valid measures
        replace the report's; the IW bound and MI pool (unless `valid_final`: the report's
        valid measures were already made final); for words the test split, here only."""
        out = {}
        if self.selection.active:
            self.selection.restore()
            out[key("valid", "selected_step")] = float(self.selection.step)
        if not valid_final:
            out.update(prefixed("valid", self._validate(final=True)))
        if self.words:
            test = self._validate(final=True, split="test")
            test["mi_pool"] = test["mutual_info"]  # over the whole test split
            out.update(prefixed("test", test))
        return out

    def _account_eval(self, seconds: float, final: bool) -> None:
        self.seconds["eval"] += seconds
        if final:
            self.seconds["final"] += seconds

    def finalize(self) -> Report:
        """The report just made, made final: for a run stopped before `steps` (a collapsed
        trial). It gains what only a final report has (the IW bound, the MI pool, the unigram
        entropy); every metric it had stays as it was. It replaces the report in the history."""
        last = self.history[-1]
        if last.step != self.step:
            raise RuntimeError(
                f"finalize: the last report is at step {last.step}, training at {self.step}"
            )
        metrics = dict(last.metrics)
        replace = self.selection.active  # another model's measures: all new
        for k, v in self._final_metrics(valid_final=False).items():
            if replace or k not in metrics:
                metrics[k] = v
        self.history[-1] = rep = Report(self.step, metrics, True)
        return rep

    def _validate(self, final: bool, split: str = "valid") -> dict[str, float]:
        start = time.perf_counter()
        valid = self.evaluator.evaluate(self.config.iw_samples if final else 0, split)
        if final and split == "valid":
            valid.update(self.evaluator.final_diagnostics())
        self._account_eval(time.perf_counter() - start, final)
        return valid

    # --- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "vocab": self.vocab.to_json(),
            "corpus_sha256": self.corpus.sha256,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "generator": self.generator.get_state(),
            "window": (self._window.clone(), self._window_steps, self._window_time),
            "free_bits_active": self._free_bits_active,
            "aggressive": (
                self.aggressive_on,
                self._previous_mi,
                self._encoder_updates,
                self._encoder_time,
            ),
            "history": [dataclasses.asdict(r) for r in self.history],
            "selection": self.selection.state_dict(),
            "seconds": dict(self.seconds),
        }

    def load_state_dict(self, state: dict) -> None:
        check_format(state)
        saved = TrainConfig(**state["config"])
        mismatched = [
            k
            for k, v in saved.to_dict().items()
            if k not in RESUMABLE_CHANGES and self.config.to_dict()[k] != v
        ]
        if mismatched:
            raise ValueError(
                f"checkpoint was made with a different config ({', '.join(mismatched)}); "
                "only " + ", ".join(sorted(RESUMABLE_CHANGES)) + " may change on resume"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.generator.set_state(state["generator"])
        self.step = state["step"]
        self.checkpoint_steps = saved.steps  # the `steps` it was training for
        window, self._window_steps, self._window_time = state["window"]
        if window.numel() == 4:  # written before the window summed over examples (characters)
            b, n = saved.batch_size, self._window_steps
            window = torch.cat([window * b, torch.tensor([n * b, n * b * saved.length])])
        self._window = window.clone().double()
        self._free_bits_active = state.get("free_bits_active", 0.0)
        if "aggressive" in state:
            self.aggressive_on, self._previous_mi, self._encoder_updates, self._encoder_time = (
                state["aggressive"]
            )
        self.history = [Report(**r) for r in state["history"]]
        self.seconds.update(state.get("seconds", {}))  # none before checkpoints kept them
        if "selection" in state:
            self.selection.load_state_dict(state["selection"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (a crash mid-write leaves the old one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    def load(self, path: str | os.PathLike) -> None:
        self.load_state_dict(read_checkpoint(path, self.device))


def fit(
    config: TrainConfig,
    on_report: Callable[[Report, Trainer], None] | None = None,
    resume_from: str | os.PathLike | None = None,
    corpus: Corpus | None = None,
) -> Trainer:
    """Train `config.steps` steps, calling `on_report(report, trainer)` every `eval_every`
    steps and at the end. Returns the trainer; `trainer.history` holds every report.

    An `on_report` that returns True for a report that is not final stops training there:
    that report is made final (`Trainer.finalize`) and handed to `on_report` again.

    Raises DivergenceError when the loss becomes NaN or infinite.
    """
    trainer = Trainer(config, corpus)
    if resume_from is not None:
        trainer.load(resume_from)
        if (
            trainer.history
            and trainer.history[-1].final
            and trainer.checkpoint_steps == config.steps
        ):
            return trainer  # it ended there (stopped early, or done): only more `steps` continue it
    while trainer.step < config.steps and not trainer.stopped:
        trainer.train_step()
        final = trainer.step == config.steps
        if trainer.step % trainer.eval_every == 0 or final:
            rep = trainer.report(final=final)
            if on_report is not None and on_report(rep, trainer) and not rep.final:
                on_report(trainer.finalize(), trainer)
                break
    return trainer
