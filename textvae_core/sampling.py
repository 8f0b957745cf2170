"""Decoding text from a trained VAE: prior samples, reconstructions, interpolations.

Character models decode one fragment of `length` characters; word models decode up to
`length` tokens and show each text up to its end token."""

from __future__ import annotations

import torch

from .models import TextVAE
from .tokens import PAD
from .vocab import Vocabulary


def fit_length(text: str, length: int) -> str:
    """Pad with spaces or cut so the text is exactly one fragment long."""
    return text[:length].ljust(length)


def _encode_texts(vocab: Vocabulary, texts: list[str], length: int, device) -> torch.Tensor:
    """Characters: each text padded or cut to one fragment (N, L). Words: each text one
    sentence ended by EOS, cut at `length` tokens, PAD after the shorter ones (N, T)."""
    if vocab.tokens == "word":
        rows = [vocab.encode_sentence(t.split())[:length] for t in texts]
        out = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.as_tensor(row)
        return out.to(device)
    ids = [torch.as_tensor(vocab.encode(fit_length(t, length)), dtype=torch.long) for t in texts]
    return torch.stack(ids).to(device)  # (N, L)


@torch.no_grad()
def sample_prior(
    model: TextVAE, vocab: Vocabulary, n: int, temperature: float = 0.0, seed: int = 0
) -> list[str]:
    """Decode n texts from z ~ N(0, I)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    z = torch.randn(n, model.config.latent, generator=gen, device=device)
    return [vocab.decode(row) for row in model.generate(z, model.config.length, temperature, gen)]


@torch.no_grad()
def reconstruct(
    model: TextVAE, vocab: Vocabulary, texts: list[str], temperature: float = 0.0, seed: int = 0
) -> list[str]:
    """Encode each text (padded/cut to the model's length) to its posterior mean and decode."""
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    mu, _ = model.encode(_encode_texts(vocab, texts, model.config.length, device))
    return [vocab.decode(row) for row in model.generate(mu, model.config.length, temperature, gen)]


@torch.no_grad()
def interpolate(
    model: TextVAE, vocab: Vocabulary, start: str, end: str, steps: int = 5
) -> list[str]:
    """Greedy decodes along the straight line between the two texts' posterior means."""
    device = next(model.parameters()).device
    mu, _ = model.encode(_encode_texts(vocab, [start, end], model.config.length, device))
    weights = torch.linspace(0, 1, steps, device=device)[:, None]  # (S, 1)
    z = (1 - weights) * mu[0] + weights * mu[1]  # (S, Z)
    return [vocab.decode(row) for row in model.generate(z, model.config.length)]
