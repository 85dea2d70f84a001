"""One BERT-base encoder layer in plain ``torch.nn``, as Hugging Face's ``BertLayer`` (eager
attention, post-LayerNorm, erf GELU), without an attention mask: every token is valid."""

from __future__ import annotations

import math

import torch
from torch import nn

BERT_BASE_HIDDEN = 768
BERT_BASE_HEADS = 12
BERT_BASE_FFN = 3072
BERT_SEQ_LEN = 128
BERT_LAYER_NORM_EPS = 1e-12
BERT_INIT_STD = 0.02  # BERT's initializer_range


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention.

    Shapes:
        - input: ``(N, S, hidden)``
        - output: ``(N, S, hidden)``
    """

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of {heads} heads")
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        q = self._split_heads(self.query(hidden_states))
        k = self._split_heads(self.key(hidden_states))
        v = self._split_heads(self.value(hidden_states))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        batch, _, seq, _ = context.shape
        return context.permute(0, 2, 1, 3).reshape(batch, seq, self.heads * self.head_dim)


class BertLayer(nn.Module):
    """Self-attention and a GELU feed-forward block, each followed by a residual LayerNorm.

    Shapes:
        - input: ``(N, S, hidden)`` float32 hidden states
        - output: ``(N, S, hidden)``
    """

    def __init__(
        self,
        hidden: int = BERT_BASE_HIDDEN,
        heads: int = BERT_BASE_HEADS,
        ffn: int = BERT_BASE_FFN,
        eps: float = BERT_LAYER_NORM_EPS,
    ) -> None:
        super().__init__()
        self.attention = BertSelfAttention(hidden, heads)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, ffn)
        self.gelu = nn.GELU()  # erf form, as BERT's "gelu"
        self.output = nn.Linear(ffn, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        attended = self.attention_output(self.attention(hidden_states))
        attended = self.attention_norm(attended + hidden_states)
        out = self.output(self.gelu(self.intermediate(attended)))
        return self.output_norm(out + attended)


def bert_layer(
    *,
    seed: int = 0,
    hidden: int = BERT_BASE_HIDDEN,
    heads: int = BERT_BASE_HEADS,
    ffn: int = BERT_BASE_FFN,
) -> BertLayer:
    """A BERT encoder layer (BERT-base sizes by default) in eval mode with seeded weights.

    Linear weights and biases are drawn from BERT's N(0, 0.02) initialiser (biases too, so that
    a compiler that dropped them would fail the numerics check); LayerNorms get random scales
    near 1 and shifts near 0 for the same reason.
    """
    generator = torch.Generator().manual_seed(seed)
    model = BertLayer(hidden, heads, ffn)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, BERT_INIT_STD, generator=generator)
                layer.bias.normal_(0.0, BERT_INIT_STD, generator=generator)
            elif isinstance(layer, nn.LayerNorm):
                layer.weight.uniform_(0.5, 1.5, generator=generator)
                layer.bias.normal_(0.0, 0.1, generator=generator)
    return model.eval()


def bert_layer_inputs(
    *, seq_len: int = BERT_SEQ_LEN, hidden: int = BERT_BASE_HIDDEN, batch: int = 1, seed: int = 0
) -> tuple[torch.Tensor]:
    """Seeded hidden states ``(batch, seq_len, hidden)`` float32, scaled like embeddings after
    BERT's embedding LayerNorm (unit variance per token)."""
    generator = torch.Generator().manual_seed(seed + 1)
    return (torch.randn(batch, seq_len, hidden, generator=generator),)
