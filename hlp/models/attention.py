"""Attention building blocks of the co-occurrence model (paper eq 1-5).

Two block shapes (`AttentionConfig.block`):
- `paper`: eq 1-3 read literally (kept so that reading stays reproducible), described below.
- `standard`: the pre-norm transformer block the paper cites ([53]) and UMT / lighthouse use:
  x + W_O(MHA(LN(x))), then x + FFN(LN(x)), a final LayerNorm per stack. Eq 2's "+ S" is the
  residual, taken on the d_model input, which W_O makes possible.

Layer-norm placement of `paper` (the paper does not state it): post-norm as in the original
transformer. One LayerNorm follows the attention sum (over d_v) and one follows the
FFN (over d_model). Eq 3 has no residual across the FFN because its input (d_v) and
output (d_model) widths differ. In the encoder the skip connection is the one on
the values in eq 2. Decoders add the canonical transformer-decoder skip from the
query to the FFN output, where the widths match.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hlp.models.settings import AttentionConfig


class MultiHeadAttention(nn.Module):
    """Multi-head dot-product attention with key padding mask; output width is d_v (eq 2, 5).

    `value_residual` adds S to the output, the "+ S" term of eq 2 (self-attention only).
    Masked keys get the most negative finite score instead of -inf, so a query
    with no valid key gets finite (meaningless) output rather than NaN, and valid
    queries get exactly zero weight on padding.
    """

    def __init__(self, cfg: AttentionConfig, value_residual: bool = False) -> None:
        super().__init__()
        self.heads, self.value_residual = cfg.heads, value_residual
        self.q = nn.Linear(cfg.d_model, cfg.d_k)
        self.k = nn.Linear(cfg.d_model, cfg.d_k)
        self.s = nn.Linear(cfg.d_model, cfg.d_v)
        self.dropout = nn.Dropout(cfg.dropout)
        # W_O of the standard block maps the heads back to d_model; eq 2 has none.
        self.out = nn.Linear(cfg.d_v, cfg.d_model) if cfg.block == "standard" else nn.Identity()

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, -1).transpose(1, 2)

    def forward(self, query: Tensor, memory: Tensor, key_mask: Tensor) -> Tensor:
        """query (B,Tq,d), memory (B,Tk,d), key_mask (B,Tk) True=valid -> (B,Tq,d_v)."""
        q, k, s = self._split(self.q(query)), self._split(self.k(memory)), self._split(self.s(memory))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        out = self.dropout(scores.softmax(dim=-1)) @ s
        if self.value_residual:
            out = out + s
        b, _, tq, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(b, tq, -1))


def feed_forward(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """The FFN of eq 3: Linear -> ReLU -> Dropout -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class EncoderLayer(nn.Module):
    """Intra-modality encoder layer, eq 1-3: F_i = LN(FFN(LN(softmax(QK^T/sqrt(d_k))S + S)))."""

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(cfg, value_residual=True)
        self.norm_attn = nn.LayerNorm(cfg.d_v)
        self.ffn = feed_forward(cfg.d_v, cfg.ffn_dim, cfg.d_model, cfg.dropout)
        self.norm_ffn = nn.LayerNorm(cfg.d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B,T,d), mask (B,T) -> (B,T,d)."""
        return self.norm_ffn(self.ffn(self.norm_attn(self.attn(x, x, mask))))


class DecoderLayer(nn.Module):
    """Cross-attention + FFN, used by the global decoder (3.2) and the co-occurrence decoders (eq 4-5).

    out = LN(query + FFN(LN(attn(query, memory))))
    """

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(cfg)
        self.norm_attn = nn.LayerNorm(cfg.d_v)
        self.ffn = feed_forward(cfg.d_v, cfg.ffn_dim, cfg.d_model, cfg.dropout)
        self.norm_ffn = nn.LayerNorm(cfg.d_model)

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        """query (B,Tq,d), memory (B,Tk,d), mask (B,Tk) -> (B,Tq,d)."""
        return self.norm_ffn(query + self.ffn(self.norm_attn(self.attn(query, memory, mask))))


class StandardLayer(nn.Module):
    """Pre-norm transformer layer: q + W_O(MHA(LN(q), memory)), then + FFN(LN(.)).

    Self-attention when the memory is the query itself (encoder), cross-attention otherwise.
    """

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        self.norm_attn, self.norm_ffn = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = MultiHeadAttention(cfg)
        self.ffn = feed_forward(cfg.d_model, cfg.ffn_dim, cfg.d_model, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, query: Tensor, memory: Tensor | None, mask: Tensor) -> Tensor:
        q = self.norm_attn(query)
        query = query + self.dropout(self.attn(q, q if memory is None else memory, mask))
        return query + self.dropout(self.ffn(self.norm_ffn(query)))


class Encoder(nn.Module):
    """`cfg.layers` stacked encoder layers (F_0 -> F_n)."""

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        standard = cfg.block == "standard"
        self.layers = nn.ModuleList((StandardLayer if standard else EncoderLayer)(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model) if standard else nn.Identity()  # pre-norm stacks end with one

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, None, mask) if isinstance(layer, StandardLayer) else layer(x, mask)
        return self.norm(x)


class Decoder(nn.Module):
    """`cfg.layers` stacked decoder layers; the memory (keys/values) is the same for every layer."""

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        standard = cfg.block == "standard"
        self.layers = nn.ModuleList((StandardLayer if standard else DecoderLayer)(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model) if standard else nn.Identity()

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layers:
            query = layer(query, memory, mask)
        return self.norm(query)
