"""Posterior-collapse diagnostics reported beside the KL term.

- active units (Burda et al. 2016): latent dimensions whose posterior mean varies over
  the data, Cov_x(E_q[z_d]) > 0.01.
- mutual information I(x; z) under the aggregate posterior, the Monte Carlo estimate of
  He et al. (2019, "Lagging inference networks"), in nats.
- batch variance of the posterior means: for BN-VAE, of the means entering its BatchNorm,
  whose KL floor (gamma^2 Z / 2 nats) holds only while it stays well above the BatchNorm's eps.
- unigram entropy of the training characters: what a decoder that ignores its context
  and z can reach at best.
- z gain: how much worse the decoder reconstructs a fragment from another fragment's z
  than from its own, in nats per fragment (bits per character in the reports). KL and
  active units say z varies; z gain says the decoder reads it. ~0 when the decoder
  ignores z, whatever the KL (free bits and BN-VAE hold the KL up by construction).
- probe accuracy (synthetic corpus only): a linear probe's accuracy at reading each
  generating factor of a sentence (topic, tense, length) from z, beside its chance level.
- importance-weighted NLL bound (Burda et al. 2016): -log 1/k sum_k p(x, z_k) / q(z_k|x),
  tighter than the ELBO as k grows.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .losses import sequence_nll
from .models import TextVAE

PROBE_FRAGMENTS = 2000  # sentence-initial fragments of the synthetic corpus's probe set
PROBE_SHARE = 0.75  # the probe is fit on this share of them and scored on the rest
PROBE_CHUNK = 500  # fragments encoded at once (or the batch size, if larger)


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent dimensions with Var_x(mu_d) > threshold. mu: (N, Z)."""
    if mu.shape[0] < 2:
        return 0
    return int((mu.float().var(dim=0) > threshold).sum())


def batch_variance(mu: torch.Tensor) -> float:
    """The mean over dimensions of each dimension's variance over the batch, as BatchNorm
    computes it in training (biased). mu: (B, Z). BN-VAE's KL floor holds only while this,
    for the means entering its BatchNorm, stays well above the BatchNorm's eps."""
    return float(mu.float().var(dim=0, unbiased=False).mean())


def _log_gaussian(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dim (broadcasting)."""
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


def mutual_information(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    generator: torch.Generator | None = None,
    chunk: int = 256,
) -> float:
    """I(x; z) = E_x E_q(z|x)[log q(z|x) - log q(z)], q(z) = mean_x q(z|x) (He et al. 2019).

    One z per x, and the batch as the sample of the aggregate posterior. Both terms use the
    same sampled z (He et al. take the first analytically), so the estimate is exactly 0 when
    every posterior is the same and never exceeds log N. mu, logvar: (N, Z) -> nats.
    Rows of the (N, N) matrix of log q(z_i | x_j) are computed `chunk` at a time, so memory
    stays at chunk * N * Z floats (256 x 4096 x 100 x 4 bytes = 0.4 GiB at most here).
    """
    mu, logvar = mu.float(), logvar.float()
    N = mu.shape[0]
    eps = torch.randn(mu.shape, generator=generator, device=mu.device)
    z = mu + eps * (0.5 * logvar).exp()  # (N, Z)
    total = 0.0
    for start in range(0, N, chunk):
        zc = z[start : start + chunk]  # (C, Z)
        # (C, N): log q(z_i | x_j)
        log_q = _log_gaussian(zc[:, None, :], mu[None, :, :], logvar[None, :, :])
        own = log_q[torch.arange(zc.shape[0]), torch.arange(start, start + zc.shape[0])]
        total += float((own - (torch.logsumexp(log_q, dim=1) - math.log(N))).sum())
    return total / N


def derangement(n: int, device=None) -> torch.Tensor:
    """A fixed permutation of range(n) with no fixed point (n >= 2): i -> i + 1 mod n."""
    return torch.arange(n, device=device).roll(-1)


@torch.no_grad()
def z_gain(
    model: TextVAE,
    x: torch.Tensor,
    z: torch.Tensor,
    own_logits: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean over the batch of rec(x | z of another fragment) - rec(x | own z), in nats per
    fragment. z (B, Z) are the batch's own posterior samples, own_logits (B, L, V) the
    decoder's output for them; fragment i is decoded again with the z of fragment
    derangement(B)[i] of the same batch."""
    if x.shape[0] < 2:
        return torch.zeros((), device=x.device)
    other_logits, _ = model.decode(z[derangement(x.shape[0], z.device)], x, generator)
    return (sequence_nll(other_logits, x) - sequence_nll(own_logits, x)).mean()


def linear_probes(
    codes: torch.Tensor,
    labels: Mapping[str, torch.Tensor],
    train_share: float = PROBE_SHARE,
    steps: int = 100,
    lr: float = 0.1,
) -> dict[str, tuple[float, float]]:
    """How well a linear probe (multinomial logistic regression, full-batch Adam from zero
    weights, so no randomness) reads each factor's labels (N,) from `codes` (N, Z): fit on
    the first `train_share` of the rows, scored on the rest. Returns factor -> (accuracy,
    chance), chance being the majority label's share of the scored rows. The factors' probes
    train as one matrix on the summed loss: each head's gradient is its own loss's, and Adam
    is elementwise, so each is the probe it would be alone, at one optimiser loop's cost.

    Feed it sampled codes z ~ q(z|x), not bare means: what reaches the decoder is z, and a
    collapsed encoder's means still vary a little with x (standardised, a probe reads that
    through the noise the decoder sees)."""
    if codes.dtype in (torch.float16, torch.bfloat16):
        codes = codes.float()
    codes = (codes - codes.mean(0)) / (codes.std(0) + 1e-6)
    cut = int(train_share * codes.shape[0])
    sizes = [int(y.max()) + 1 for y in labels.values()]
    weight = codes.new_zeros(codes.shape[1], sum(sizes), requires_grad=True)
    bias = codes.new_zeros(sum(sizes), requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr)
    fit, held = codes[:cut], codes[cut:]
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            heads = (fit @ weight + bias).split(sizes, dim=1)
            sum(F.cross_entropy(h, y[:cut]) for h, y in zip(heads, labels.values())).backward()
            opt.step()
    out = {}
    with torch.no_grad():
        for name, h, y in zip(labels, (held @ weight + bias).split(sizes, dim=1), labels.values()):
            acc = float((h.argmax(1) == y[cut:]).float().mean())
            out[name] = acc, float(torch.bincount(y[cut:]).max()) / (codes.shape[0] - cut)
    return out


def linear_probe_accuracy(
    codes: torch.Tensor, labels: torch.Tensor, **kwargs
) -> tuple[float, float]:
    """`linear_probes` of one factor: (accuracy, chance)."""
    return linear_probes(codes, {"y": labels}, **kwargs)["y"]


def probe_set(length: int, vocab) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The fixed probe set of the synthetic corpus at this fragment length: ids (N, L) and
    each fragment's generating factors (topic, tense, length)."""
    from .grammar import synthetic_probe_set

    return synthetic_probe_set(seed=123, n=PROBE_FRAGMENTS, length=length, vocab=vocab)


def chance_levels(labels: dict[str, np.ndarray]) -> dict[str, float]:
    """probe_<factor>_chance: the majority label's share of the scored part of the probe set."""
    cut = int(PROBE_SHARE * len(next(iter(labels.values()))))
    return {
        f"probe_{f}_chance": float(np.bincount(y[cut:]).max() / len(y[cut:]))
        for f, y in labels.items()
    }


@torch.no_grad()
def probe_metrics(
    model: TextVAE,
    ids: torch.Tensor,
    labels: dict[str, torch.Tensor],
    batch_size: int,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """probe_<factor>_acc and probe_<factor>_chance for each labelled factor, from codes
    z ~ q(z|x) of the fragments `ids` (N, L), encoded PROBE_CHUNK (or `batch_size`, if larger)
    at a time."""
    codes = []
    for chunk in ids.split(max(batch_size, PROBE_CHUNK)):
        mu, logvar = model.encode(chunk)
        codes.append(model.reparameterize(mu, logvar, generator))
    out = {}
    for factor, (acc, chance) in linear_probes(torch.cat(codes), labels).items():
        out[f"probe_{factor}_acc"], out[f"probe_{factor}_chance"] = acc, chance
    return out


def unigram_entropy_bpc(ids, vocab_size: int) -> float:
    """Entropy of the character distribution of `ids` in bits: the cost of a model that
    knows character frequencies and nothing else (Fig 3's floor for a useless decoder)."""
    counts = np.bincount(np.asarray(ids).ravel(), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


@torch.no_grad()
def importance_weighted_nll(
    model: TextVAE,
    x: torch.Tensor,
    samples: int,
    generator: torch.Generator | None = None,
    chunk: int = 16,
) -> torch.Tensor:
    """-log p(x) bound per fragment (B,) in nats, from `samples` importance samples."""
    mu, logvar = model.encode(x)
    log_weights = []
    for start in range(0, samples, chunk):
        k = min(chunk, samples - start)
        mu_k = mu.repeat_interleave(k, 0)
        lv_k = logvar.repeat_interleave(k, 0)
        z = model.reparameterize(mu_k, lv_k, generator)  # (B*k, Z)
        logits, _ = model.decode(z, x.repeat_interleave(k, 0), generator)
        log_px_z = -sequence_nll(logits, x.repeat_interleave(k, 0))
        zeros = torch.zeros_like(z)
        log_pz = _log_gaussian(z.float(), zeros.float(), zeros.float())
        log_qz = _log_gaussian(z.float(), mu_k.float(), lv_k.float())
        log_weights.append((log_px_z + log_pz - log_qz).view(x.shape[0], k))
    lw = torch.cat(log_weights, dim=1)  # (B, samples)
    return -(torch.logsumexp(lw, dim=1) - math.log(samples))
