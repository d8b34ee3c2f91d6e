"""A plain transformer encoder whose attention maps can be inspected.

The HyperTransformer's weight generators are ordinary encoders (paper, Sec. 3): multi-head softmax
attention scaled by 1/sqrt(head_dim), residual connections with POST-LayerNorm, a Dense ->
activation -> Dense feed-forward block, and NO positional encoding, so that the output for each
token does not depend on the order of the other tokens. It is written out here (rather than using
``nn.TransformerEncoder``) so that every layer can hand back its attention weights for the notebooks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import htlib.speed as speed
from htlib.errors import ConfigError
from htlib.models.cnn import activation_fn


@dataclass
class TransformerConfig:
    """Encoder shape. ``attention_width`` (all heads together) defaults to ``width``, ``ff_width``
    (feed-forward inner width) defaults to ``width`` as in the reference Omniglot script."""

    width: int
    heads: int = 2
    layers: int = 3
    attention_width: int | None = None
    ff_width: int | None = None
    activation: str = "relu"
    dropout: float = 0.0
    # Start with identical query and key projections, so that at initialisation a token attends
    # most to tokens that look like itself (e.g. a class's placeholder to that class's samples).
    # Without it, training sat on a long loss plateau at chance level (see README, "Departures").
    match_query_key_init: bool = True

    def __post_init__(self) -> None:
        self.attention_width = self.attention_width or self.width
        self.ff_width = self.ff_width or self.width
        if self.attention_width % self.heads != 0:
            raise ConfigError(
                f"attention_width {self.attention_width} must be divisible by heads {self.heads}."
            )


class MultiHeadAttention(nn.Module):
    """Softmax self-attention with ``heads`` heads of size attention_width / heads."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.attention_width // cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.attention_width)
        self.out = nn.Linear(cfg.attention_width, cfg.width)
        self.dropout = nn.Dropout(cfg.dropout)
        self.match_query_key = cfg.match_query_key_init
        self.tie_query_key()

    def tie_query_key(self) -> None:
        """Copy the query projection onto the key projection when the config asks for equal starts
        (again after any re-initialisation of the weights)."""
        if self.match_query_key:
            a = self.heads * self.head_dim
            with torch.no_grad():
                self.qkv.weight[a : 2 * a] = self.qkv.weight[:a]
                self.qkv.bias[a : 2 * a] = self.qkv.bias[:a]

    def _fused(self, need_weights: bool, x: Tensor) -> bool:
        """Whether PyTorch's fused attention gives this call's output: not when the maps are asked for,
        not with dropout in training (it would draw other random numbers), and not under autocast,
        where it would also take the softmax to bf16 (the written-out one stays fp32 there)."""
        return (not need_weights and speed.fast_kernels_enabled() and not (self.training and self.dropout.p)
                and not torch.is_autocast_enabled(x.device.type))

    def forward(self, x: Tensor, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, width) -> output (B, T, width) and attention weights (B, heads, T, T), or None
        when they are not needed and PyTorch's fused attention computes the same output."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # q, k, v: (B, heads, T, head_dim)
        if self._fused(need_weights, x):
            # one kernel for scores, softmax and the weighted sum, forward and backward (its 1/sqrt(head_dim)
            # scale is the default)
            attn, y = None, F.scaled_dot_product_attention(q, k, v)
        else:
            attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
            y = self.dropout(attn) @ v  # (B, heads, T, head_dim)
        y = y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.out(y), attn


class EncoderLayer(nn.Module):
    """x = LN(x + Attn(x)); x = LN(x + FF(x))  (post-LayerNorm)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(cfg)
        self.ff_in = nn.Linear(cfg.width, cfg.ff_width)
        self.ff_out = nn.Linear(cfg.ff_width, cfg.width)
        self.act = activation_fn(cfg.activation)
        self.norm1 = nn.LayerNorm(cfg.width)
        self.norm2 = nn.LayerNorm(cfg.width)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        a, attn = self.attn(x, need_weights)
        x = self.norm1(x + self.dropout(a))
        x = self.norm2(x + self.dropout(self.ff_out(self.act(self.ff_in(x)))))
        return x, attn


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer`: (B, T, width) -> (B, T, width)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.layers)])

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """With ``return_attention`` also return each layer's attention, a list of (B, heads, T, T)."""
        maps = []
        for layer in self.layers:
            x, attn = layer(x, return_attention)
            maps.append(attn)
        return (x, maps) if return_attention else x
