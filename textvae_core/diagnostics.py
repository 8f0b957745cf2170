"""Posterior-collapse diagnostics reported beside the KL term.

- active units (Burda et al. 2016): latent dimensions whose posterior mean varies over
  the data, Cov_x(E_q[z_d]) > 0.01.
- mutual information I(x; z) under the aggregate posterior, the Monte Carlo estimate of
  He et al. (2019, "Lagging inference networks"), in nats.
- importance-weighted NLL bound (Burda et al. 2016): -log 1/k sum_k p(x, z_k) / q(z_k|x),
  tighter than the ELBO as k grows.
"""

from __future__ import annotations

import math

import torch

from .losses import sequence_nll
from .models import TextVAE


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent dimensions with Var_x(mu_d) > threshold. mu: (N, Z)."""
    if mu.shape[0] < 2:
        return 0
    return int((mu.float().var(dim=0) > threshold).sum())


def _log_gaussian(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dim (broadcasting)."""
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> float:
    """I(x; z) = E_x E_q(z|x)[log q(z|x) - log q(z)], q(z) = mean_x q(z|x) (He et al. 2019).

    One z per x, and the batch as the sample of the aggregate posterior. Both terms use the
    same sampled z (He et al. take the first analytically), so the estimate is exactly 0 when
    every posterior is the same and never exceeds log N. mu, logvar: (N, Z) -> nats.
    """
    mu, logvar = mu.float(), logvar.float()
    N = mu.shape[0]
    eps = torch.randn(mu.shape, generator=generator, device=mu.device)
    z = mu + eps * (0.5 * logvar).exp()  # (N, Z)
    log_q = _log_gaussian(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # (N, N): log q(z_i | x_j)
    log_qz = torch.logsumexp(log_q, dim=1) - math.log(N)
    return float((log_q.diagonal() - log_qz).mean())


@torch.no_grad()
def importance_weighted_nll(model: TextVAE, x: torch.Tensor, samples: int,
                            generator: torch.Generator | None = None, chunk: int = 16) -> torch.Tensor:
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
