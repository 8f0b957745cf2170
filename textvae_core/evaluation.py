"""Evaluation of a model under training: held-out bits per character, active units, mutual
information, the z gain, the importance-weighted bound, the synthetic corpus's linear
probes, and once at the end the MI over a larger pool of validation fragments.

Every measure draws from its own seeded generator, so evaluating never moves the training
RNG and a report's values do not depend on when the previous one was made.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from .config import TrainConfig
from .data import Corpus
from .diagnostics import (
    active_units,
    batch_variance,
    importance_weighted_nll,
    mutual_information,
    probe_metrics,
    probe_set,
    unigram_entropy_bpc,
    z_gain,
)
from .fragments import FragmentSampler
from .tokens import PAD, UNK
from .words import fixed_batches
from .losses import bits_per_char, vae_objective
from .models import TextVAE, VAEOutput


def resolve_device(name: str) -> torch.device:
    """The device a config's `device` names ("auto": CUDA when present, else the CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA device is available")
    return torch.device(name)


def autocast_context(device: torch.device):
    """bfloat16 autocast on CUDA; float32 (no context) elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fragment_bits(rec: float, kl: float, aux: float, config: TrainConfig) -> dict[str, float]:
    """Nats per fragment -> the total (rec + KL, the bound at weight 1), rec, KL and aux
    bits per character (aux only for the hybrids)."""
    L = config.length
    return {
        "total_bpc": bits_per_char(rec + kl, L),
        "rec_bpc": bits_per_char(rec, L),
        "kl_bpc": bits_per_char(kl, L),
        "aux_bpc": bits_per_char(aux, L) if config.model.startswith("hybrid") else math.nan,
    }


def _exp(x: float) -> float:
    """exp(x), inf where it overflows (a diverging model's perplexity)."""
    return math.exp(x) if x < 700 else math.inf


def sentence_nats(
    rec: float, kl: float, aux: float, sentences: int, tokens: int, config: TrainConfig
) -> dict[str, float]:
    """Sums over sentences of a word corpus -> the field's measures: nll (rec + KL, the
    negative ELBO), rec and KL in nats per sentence, and the perplexity per token (words and
    end tokens) exp(total nll / tokens); aux for the hybrids."""
    n = max(sentences, 1)
    return {
        "nll_nats": (rec + kl) / n,
        "rec_nats": rec / n,
        "kl_nats": kl / n,
        "ppl": _exp((rec + kl) / tokens) if tokens else math.nan,
        "aux_nats": aux / n if config.model.startswith("hybrid") else math.nan,
    }


class Evaluator:
    """The held-out measures of one run's model, on the same fragments at every report."""

    def __init__(self, model: TextVAE, corpus: Corpus, config: TrainConfig, device: torch.device):
        self.model, self.corpus, self.config, self.device = model, corpus, config, device
        self._probe_set = None  # the synthetic corpus's probe fragments, made at the first report

    def validation_batches(self) -> list[torch.Tensor]:
        """The same random valid windows at every report, so curves compare like for like
        (words: `evaluate_sentences`'s batches)."""
        cfg = self.config
        if self.corpus.tokens == "word":
            limit = cfg.eval_batches * cfg.batch_size
            batches = fixed_batches(self.corpus.valid, cfg.batch_size, self.max_len, limit)
            return [x.to(self.device) for _, x in batches]
        sampler = FragmentSampler(
            self.corpus.valid,
            self.config.length,
            self.config.batch_size,
            seed=self.config.seed + 1_000_003,
        )
        return [sampler.sample().to(self.device) for _ in range(self.config.eval_batches)]

    @property
    def max_len(self) -> int:
        """Words: the longest sentence a model reads in tokens (0: no maximum, the LSTM VAE)."""
        return 0 if self.config.model == "lstm" else self.config.length

    @torch.no_grad()
    def evaluate(self, iw_samples: int = 0, split: str = "valid") -> dict[str, float]:
        """The measures on `split` (valid; test only for words, in the final report)."""
        if self.corpus.tokens == "word":
            return self.evaluate_sentences(iw_samples, split)
        cfg = self.config
        self.model.eval()
        gen = torch.Generator(self.device).manual_seed(cfg.seed + 17)  # independent of training RNG
        sums = torch.zeros(4, dtype=torch.float64)
        mus, logvars, iw, mu_vars = [], [], [], []
        batches = self.validation_batches()
        for x in batches:
            with autocast_context(self.device):  # the model's forward, keeping z for the z gain
                raw_mu, logvar = self.model.posterior(x)  # mu before BN-VAE's BatchNorm
                mu = self.model.normalize_mean(raw_mu)
                z = self.model.reparameterize(mu, logvar, gen)
                out = VAEOutput(*self.model.decode(z, x, gen), mu, logvar)
                gain = z_gain(self.model, x, z, out.logits, gen)
            parts = vae_objective(out, x, cfg.alpha, 1.0)
            sums += (
                torch.stack([parts["rec"], parts["kl"], parts["aux"], gain.float()]).double().cpu()
            )
            mus.append(out.mu.float())
            logvars.append(out.logvar.float())
            if cfg.bn_vae:
                mu_vars.append(batch_variance(raw_mu))
            if iw_samples:
                with autocast_context(self.device):
                    iw.append(
                        importance_weighted_nll(self.model, x, iw_samples, gen)
                        .float()
                        .mean()
                        .item()
                    )
        rec, kl, aux, gain = (sums / len(batches)).tolist()
        mu, logvar = torch.cat(mus), torch.cat(logvars)
        m = {
            **fragment_bits(rec, kl, aux, cfg),
            "active_units": float(active_units(mu)),
            "mutual_info": mutual_information(mu, logvar, gen),
            "z_gain_bpc": bits_per_char(gain, cfg.length),
        }
        if cfg.bn_vae:  # BN-VAE's KL floor holds while this stays well above the BatchNorm's eps
            m["bn_mu_var"] = float(np.mean(mu_vars))
        if iw_samples:
            m["iw_nll_bpc"] = bits_per_char(float(np.mean(iw)), cfg.length)
        if self.corpus.name == "synthetic":
            m.update(self.probe())
        return m

    @torch.no_grad()
    def evaluate_sentences(self, iw_samples: int = 0, split: str = "valid") -> dict[str, float]:
        """A word corpus's measures on its `split`: the first eval_batches * batch_size
        sentences (all with eval_batches=0), in fixed batches of similar lengths; the IW bound
        on the first iw_sentences (0: all). Sentences longer than a model's maximum are cut
        (`truncated` counts them)."""
        cfg = self.config
        self.model.eval()
        data = getattr(self.corpus, split)
        gen = torch.Generator(self.device).manual_seed(cfg.seed + 17)
        limit = cfg.eval_batches * cfg.batch_size
        sums = torch.zeros(4, dtype=torch.float64)  # rec, kl, aux, z gain: summed over sentences
        sentences = tokens = 0
        mus, logvars = [], []
        for _, x in fixed_batches(data, cfg.batch_size, self.max_len, limit):
            x = x.to(self.device)
            with autocast_context(self.device):
                mu, logvar = self.model.encode(x)
                z = self.model.reparameterize(mu, logvar, gen)
                out = VAEOutput(*self.model.decode(z, x, gen), mu, logvar)
                gain = z_gain(self.model, x, z, out.logits, gen)
            parts = vae_objective(out, x, cfg.alpha, 1.0)
            b = x.shape[0]
            sums += (
                torch.stack([parts["rec"], parts["kl"], parts["aux"], gain.float()]).double().cpu()
                * b
            )
            sentences += b
            tokens += int((x != PAD).sum())
            mus.append(mu.float())
            logvars.append(logvar.float())
        rec, kl, aux, gain = sums.tolist()
        mu, logvar = torch.cat(mus), torch.cat(logvars)
        m = {
            **sentence_nats(rec, kl, aux, sentences, tokens, cfg),
            "active_units": float(active_units(mu)),
            "mutual_info": mutual_information(mu, logvar, gen),
            "z_gain_nats": gain / sentences,
            "sentences": float(sentences),
            "truncated": float(data.truncated(self.max_len)),
        }
        if iw_samples:
            total = iw_tokens = 0.0
            count = 0
            for _, x in fixed_batches(data, cfg.batch_size, self.max_len, cfg.iw_sentences):
                x = x.to(self.device)
                with autocast_context(self.device):
                    total += float(importance_weighted_nll(self.model, x, iw_samples, gen).sum())
                iw_tokens += int((x != PAD).sum())
                count += x.shape[0]
            m["iw_nll_nats"] = total / count
            m["iw_ppl"] = _exp(total / iw_tokens)
            m["iw_sentences"] = float(count)
        return m

    def probe(self) -> dict[str, float]:
        """The linear probe of each generating factor of the synthetic corpus (diagnostics)."""
        if self._probe_set is None:
            ids, labels = probe_set(self.config.length, self.corpus.vocab)
            self._probe_set = (
                torch.as_tensor(ids, device=self.device),
                {k: torch.as_tensor(v, device=self.device) for k, v in labels.items()},
            )
        # its own generator: the other metrics stay unchanged
        gen = torch.Generator(self.device).manual_seed(self.config.seed + 31)
        with autocast_context(self.device):
            return probe_metrics(self.model, *self._probe_set, self.config.batch_size, gen)

    @torch.no_grad()
    def final_diagnostics(self) -> dict[str, float]:
        """Once, at the end: MI against a pool of `mi_pool` validation fragments (encoder-only
        passes, a batch at a time) and the unigram entropy of the training characters."""
        cfg = self.config
        if self.corpus.tokens == "word":
            m = {"unigram_nats": unigram_sentence_nats(self.corpus, "valid")}
        else:
            m = {"unigram_bpc": unigram_entropy_bpc(self.corpus.train, self.corpus.vocab.size)}
        if cfg.mi_pool:
            m["mi_pool"] = self.pool_mutual_info(cfg.mi_pool)
        return m

    @torch.no_grad()
    def pool_mutual_info(self, n: int) -> float:
        """I(x; z) in nats over the first n fragments of a fixed pool of validation fragments
        (the same at every call, with its own generator), encoded a batch at a time."""
        cfg = self.config
        self.model.eval()
        if self.corpus.tokens == "word":  # the first n valid sentences
            mus, logvars = [], []
            for _, x in fixed_batches(self.corpus.valid, cfg.batch_size, self.max_len, n):
                with autocast_context(self.device):
                    mu, logvar = self.model.encode(x.to(self.device))
                mus.append(mu.float())
                logvars.append(logvar.float())
            gen = torch.Generator(self.device).manual_seed(cfg.seed + 29)
            return mutual_information(torch.cat(mus), torch.cat(logvars), gen)
        sampler = FragmentSampler(
            self.corpus.valid, cfg.length, cfg.batch_size, seed=cfg.seed + 2_000_003
        )
        mus, logvars, count = [], [], 0
        while count < n:
            with autocast_context(self.device):
                mu, logvar = self.model.encode(sampler.sample().to(self.device))
            mus.append(mu.float())
            logvars.append(logvar.float())
            count += mu.shape[0]
        gen = torch.Generator(self.device).manual_seed(cfg.seed + 29)
        return mutual_information(torch.cat(mus)[:n], torch.cat(logvars)[:n], gen)


def unigram_sentence_nats(corpus, split: str = "valid") -> float:
    """The word corpus's unigram floor: nats per sentence of `split` under the training
    tokens' frequencies (end tokens included; add-one counts, so no token costs infinity)."""
    train, data = corpus.train, getattr(corpus, split)
    counts = np.bincount(np.asarray(train.ids), minlength=corpus.vocab.size).astype(np.float64)
    counts[UNK:] += 1.0  # UNK and every word; PAD, START and DUMMY are never targets
    logp = np.log(counts / counts.sum(), where=counts > 0, out=np.zeros_like(counts))
    return float(-logp[np.asarray(data.ids, dtype=np.int64)].sum() / len(data))
