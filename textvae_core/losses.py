"""The objective of Semeniuta et al. (2017), Eq. 1-4, as pure functions.

    J = w_kl * KL(q(z|x) || N(0, I)) + rec + alpha * aux

rec and aux are cross-entropies summed over the L real positions of a fragment (padding
excluded) and averaged over the batch; KL is in closed form. All values are in nats per
fragment; `bits_per_char` converts them: nats / (L * ln 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .models import VAEOutput
from .tokens import PAD


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example (Eq. 1), in nats.

    mu, logvar: (B, Z) -> (B,)
    """
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)


def sequence_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over time per example (Eq. 2 / 3), in nats.

    logits: (B, L, V), targets: (B, L) -> (B,). Only the first L positions are scored, so
    a decoder run on a padded length contributes nothing from its padding, and PAD targets
    (after a sentence's end token in a batch of words) score 0.
    """
    L = targets.shape[1]
    logits = logits[:, :L].float()
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        reduction="none",
        ignore_index=PAD,
    )
    return nll.view(targets.shape).sum(dim=1)


@dataclass(frozen=True)
class KLSchedule:
    """The KL weight over training: clip((step - start) / (end - start), 0, 1 - eps) + eps.

    anneal=False is weight 1 from step 0; kl=False is weight 0 throughout (a stochastic
    autoencoder, Fig 3). With `initial` > 0 (kl_start) the weight is min(initial + ramp, 1)
    with ramp = max(step - start, 0) / (end - start), texar's rule. With `cycles` = M > 0
    (cyclical annealing, Fu et al. 2019) the whole
    run, steps 0 to `steps`, is cut into M equal cycles, as in their code: in each the weight
    rises linearly from 0 at the cycle's first step to 1 at `ratio` of the cycle, then holds
    at 1 (the ramp's start, end and eps are not used).
    """

    start: int
    end: int
    eps: float = 1e-3
    anneal: bool = True
    kl: bool = True
    cycles: int = 0
    ratio: float = 0.5
    steps: int = 0
    initial: float = 0.0  # kl_start: > 0 starts the ramp there, the slope unchanged (texar)

    @classmethod
    def of(cls, config: TrainConfig) -> "KLSchedule":
        return cls(
            config.anneal_start,
            config.anneal_end,
            config.kl_eps,
            config.anneal,
            config.kl,
            config.cycles,
            config.cycle_ratio,
            config.steps,
            config.kl_start,
        )

    def weight_at(self, step: int) -> float:
        if not self.kl:
            return 0.0
        if not self.anneal:
            return 1.0
        if self.cycles:
            # cycle k spans steps [k T / M, (k + 1) T / M); counted in steps / M, exactly
            k = min(step * self.cycles // self.steps, self.cycles - 1)
            into = step * self.cycles - k * self.steps  # (step - k T / M) * M
            return min(into / (self.steps * self.ratio), 1.0)
        ramp = (step - self.start) / (self.end - self.start)
        if self.initial > 0:
            return min(self.initial + max(ramp, 0.0), 1.0)
        return min(max(ramp, 0.0), 1.0 - self.eps) + self.eps


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL_j, dimension j's KL averaged over the batch, in nats. mu, logvar: (B, Z) -> (Z,)."""
    return (0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar)).mean(0)


def free_bits_kl(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    """sum_j max(free_bits, KL_j), KL_j dimension j's KL averaged over the batch (Kingma et al.
    2016, Li et al. 2019): a dimension under the target gets no gradient from the KL term."""
    return kl_per_dimension(mu, logvar).clamp(min=free_bits).sum()


def free_bits_active(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The share of latent dimensions whose KL_j is at or below `free_bits`: those where the
    floor engaged (their KL term is the constant floor). A scalar in [0, 1]."""
    return (kl_per_dimension(mu, logvar) <= free_bits).float().mean()


def vae_objective(
    out: VAEOutput, x: torch.Tensor, alpha: float, kl_weight: float, free_bits: float = 0.0
) -> dict[str, torch.Tensor]:
    """The training loss (Eq. 4) and its parts, batch-averaged nats per fragment.

    out: the model's output for targets x (B, L); alpha weighs the auxiliary term;
    free_bits > 0 thresholds the KL term of the loss per dimension (`free_bits_kl`).
    Returns scalars: loss (what is minimised), rec, kl (always the true KL), aux (0 for
    models without an auxiliary head), bound = rec + kl, the negative ELBO at weight 1, and
    with free_bits > 0 free_bits_active, the share of dimensions at the floor (no gradient).
    """
    rec = sequence_nll(out.logits, x).mean()
    kl = gaussian_kl(out.mu.float(), out.logvar.float()).mean()
    aux = (
        sequence_nll(out.aux_logits, x).mean() if out.aux_logits is not None else rec.new_zeros(())
    )
    kl_term = free_bits_kl(out.mu.float(), out.logvar.float(), free_bits) if free_bits > 0 else kl
    loss = kl_weight * kl_term + rec + alpha * aux
    parts = {"loss": loss, "rec": rec, "kl": kl, "aux": aux, "bound": rec + kl}
    if free_bits > 0:
        parts["free_bits_active"] = free_bits_active(
            out.mu.detach().float(), out.logvar.detach().float(), free_bits
        )
    return parts


def bits_per_char(nats_per_fragment: float, length: int) -> float:
    """nats per fragment of `length` characters -> bits per character."""
    return nats_per_fragment / (length * math.log(2.0))
