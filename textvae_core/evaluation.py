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
from .losses import bits_per_char, vae_objective
from .models import TextVAE, VAEOutput


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


class Evaluator:
    """The held-out measures of one run's model, on the same fragments at every report."""

    def __init__(self, model: TextVAE, corpus: Corpus, config: TrainConfig, device: torch.device):
        self.model, self.corpus, self.config, self.device = model, corpus, config, device
        self._probe_set = None  # the synthetic corpus's probe fragments, made at the first report

    def validation_batches(self) -> list[torch.Tensor]:
        """The same random valid windows at every report, so curves compare like for like."""
        sampler = FragmentSampler(
            self.corpus.valid,
            self.config.length,
            self.config.batch_size,
            seed=self.config.seed + 1_000_003,
        )
        return [sampler.sample().to(self.device) for _ in range(self.config.eval_batches)]

    @torch.no_grad()
    def evaluate(self, iw_samples: int = 0) -> dict[str, float]:
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
