"""SASRec with optional frozen item-side inputs and BBQRec's similarity reweighting of attention.

One class, three verbs: `encode` a sequence, the training `loss`, `score` all items. The item input is
`e_i = E_ID[i] + sum_m W_m z_m(i)`: a learned ID vector plus projected frozen per-stream vectors (the
tokenizer's quantized vectors, or continuous text/image embeddings), or with one-stage training
(`models.joint`) quantized vectors that the tokenizer inside the model computes and trains. The final hidden
state is scored against every item's input vector. With the similarity tables at zero the model is exactly SASRec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bbqrec.models.layers import TransformerBlock, allowed_pairs, attention_bias
from bbqrec.models.losses import full_softmax_cross_entropy
from bbqrec.models.similarity import SimilarityBias

if TYPE_CHECKING:  # the tokenizer (faiss, scipy) is imported only by a one-stage model
    from bbqrec.models.joint import JointQuantizer

LOSSES = ("ce", "bce")


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of the sequence model (defaults: RecBole 1.2.1 SASRec)."""

    n_items: int  # item ids are 1..n_items, 0 is padding
    max_len: int = 50
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.5  # on the input embedding and after each sublayer
    attn_dropout: float = 0.5  # on the attention probabilities
    norm_first: bool = False  # False: post-LN (RecBole); True: pre-LN with a final layer norm
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02
    loss: str = "ce"  # "ce": full softmax over all items; "bce": one sampled negative per position
    similarity: str | None = None  # None, "prefix", "equal_levels" or "cosine" (see models.similarity)
    cosine_buckets: int = 8
    joint_tokenizer_weight: float = 1.0  # one-stage training: weight of the tokenizer's own losses


def pad_sequences(sequences: pl.Series, max_len: int) -> Tensor:
    """Item-id lists -> LongTensor [U, max_len], left-aligned (items, then 0s), each cut to its last max_len."""
    tails = sequences.list.tail(max_len)
    lengths = tails.list.len().to_numpy().astype(np.int64)
    flat = tails.explode().drop_nulls().to_numpy().astype(np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    out = np.zeros((len(lengths), max_len), dtype=np.int64)
    out[rows, np.arange(len(flat)) - starts] = flat
    return torch.from_numpy(out)


class SASRec(nn.Module):
    """Self-attentive sequential recommender (Kang & McAuley 2018; RecBole's layout).

    item_features: frozen per-stream item vectors, each [n_items + 1, d_m] (row 0 = padding, zeros).
    item_codes: [n_items + 1, M, levels] semantic IDs of the M streams, needed when `config.similarity` is set.
    code_vectors: [n_items + 1, M, d] the quantized vectors of those IDs, needed by the `cosine` similarity.
    joint: one-stage training, the tokenizer that computes the codes and quantized vectors every step (its
    current codes are then `item_codes`); joint_inputs: which of its streams' vectors join the item input.
    """

    def __init__(
        self,
        config: ModelConfig,
        item_features: Sequence[Tensor] = (),
        item_codes: Tensor | None = None,
        code_vectors: Tensor | None = None,
        joint: JointQuantizer | None = None,
        joint_inputs: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if config.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {config.loss!r}")
        self.config = config
        hidden = config.hidden_size
        self.item_embedding = nn.Embedding(config.n_items + 1, hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, hidden)
        self.n_features = len(item_features)
        for m, features in enumerate(item_features):
            if features.shape[0] != config.n_items + 1:
                raise ValueError(f"item feature {m} has {features.shape[0]} rows, expected n_items + 1")
            self.register_buffer(f"item_feature_{m}", features.float())
        self.feature_projections = nn.ModuleList(nn.Linear(f.shape[1], hidden, bias=False) for f in item_features)
        self.joint_inputs = list(joint_inputs)
        code_dim = 0 if joint is None else joint.tokenizer.config.code_dim
        self.joint_projections = nn.ModuleList(nn.Linear(code_dim, hidden, bias=False) for _ in self.joint_inputs)
        self.input_norm = nn.Identity() if config.norm_first else nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                hidden,
                config.n_heads,
                config.inner_size,
                config.dropout,
                config.attn_dropout,
                config.norm_first,
                config.layer_norm_eps,
            )
            for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps) if config.norm_first else nn.Identity()
        self.similarity = None
        if config.similarity is not None:
            if item_codes is None:
                raise ValueError(f"similarity {config.similarity!r} needs item_codes")
            self.similarity = SimilarityBias(
                config.similarity,
                config.n_layers,
                config.n_heads,
                item_codes,
                code_vectors if config.similarity == "cosine" else None,
                config.cosine_buckets,
            )
        self.apply(self._init_weights)
        self.joint = joint  # after the initialisation above: the tokenizer keeps its trained weights
        self._eval_items: tuple[tuple, Tensor] | None = None  # item_vectors' kept result: (weights' versions, vectors)

    def _init_weights(self, module: nn.Module) -> None:
        # RecBole's initialisation: normal(0, init_std) weights, zero biases, identity layer norms.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if module is self.item_embedding:
                with torch.no_grad():
                    module.weight[0].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def item_vectors(self) -> Tensor:
        """Every item's input vector e_i [N+1, D]; row 0 (padding) is zero.

        With one-stage training this runs the tokenizer over every item and sets the similarity bias to the
        current codes. Out of training and without autograd (evaluation, recommendation) the result is kept
        until a weight changes, so scoring batch after batch computes it once (with content inputs it costs a
        [N, feature dim] x [feature dim, D] product, the tokenizer's pass over the catalogue in one-stage models).
        """
        keep = not self.training and not torch.is_grad_enabled()
        if keep and self._eval_items is not None and self._eval_items[0] == self._weights_version():
            return self._eval_items[1]
        vectors = self.item_embedding.weight
        for m, projection in enumerate(self.feature_projections):
            vectors = vectors + projection(getattr(self, f"item_feature_{m}"))
        if self.joint is not None:
            items = self.joint()
            if self.similarity is not None:
                self.similarity.set_codes(items.codes, items.vectors.detach())
            for m, projection in zip(self.joint_inputs, self.joint_projections):
                vectors = vectors + projection(items.vectors[:, m])
        # after set_codes, which writes buffers; a later in-place change to any weight or buffer (an optimiser
        # step, load_state_dict, .to()) changes its version counter or storage and so the key
        self._eval_items = (self._weights_version(), vectors) if keep else None
        return vectors

    def _weights_version(self) -> tuple[tuple[int, int], ...]:
        return tuple((t.data_ptr(), t._version) for t in (*self.parameters(), *self.buffers()))

    def encode(
        self,
        item_seq: Tensor,
        positions: Tensor | None = None,
        segments: Tensor | None = None,
        vectors: Tensor | None = None,
        query_positions: Tensor | None = None,
    ) -> Tensor:
        """Hidden states [B, L, D] of left-aligned item sequences [B, L] (position p sees items 0..p).

        For packed rows (several sequences per row), `positions` [B, L] is each slot's position in its own
        sequence and `segments` [B, L] the sequence it belongs to (see layers.allowed_pairs). `vectors` are the
        item vectors when the caller has them already (`item_vectors()`). `query_positions` [B]: only the hidden
        state at that position of each sequence, [B, D]; the last block then computes that one position.
        """
        if positions is None:
            positions = torch.arange(item_seq.shape[1], device=item_seq.device)
        if vectors is None and (self.n_features or self.joint is not None):
            vectors = self.item_vectors()
        items = self.item_embedding(item_seq) if vectors is None else F.embedding(item_seq, vectors)
        x = self.dropout(self.input_norm(items + self.position_embedding(positions)))  # [B, L, D]
        allowed = allowed_pairs(item_seq, segments)  # [B, L, L]
        if self.similarity is not None:  # [B, H, L, L] per layer; the last one [B, H, 1, L] with query positions
            biases = self.similarity.layer_biases(item_seq, allowed, query_positions)
        elif query_positions is None:
            biases = [attention_bias(allowed)] * len(self.blocks)  # [B, 1, L, L], shared by every layer
        else:  # the last block needs the query positions' rows only: [B, 1, 1, L]
            query_rows = allowed[torch.arange(len(item_seq), device=item_seq.device), query_positions, None]
            biases = [attention_bias(allowed)] * (len(self.blocks) - 1) + [attention_bias(query_rows)]
        for depth, (block, bias) in enumerate(zip(self.blocks, biases), start=1):
            x = block(x, bias, query_positions if depth == len(self.blocks) else None)
        return self.final_norm(x if query_positions is None else x[:, 0])

    def loss(
        self,
        item_seq: Tensor,
        targets: Tensor,
        generator: torch.Generator | None = None,
        positions: Tensor | None = None,
        segments: Tensor | None = None,
    ) -> Tensor:
        """Mean training loss over every position with a target; targets [B, L], 0 = no target.

        `generator` draws the negatives of the `bce` loss (uniform over the items other than the target);
        `positions` and `segments` describe packed rows (see `encode`).
        """
        has_target = targets != 0
        vectors = self.item_vectors()  # [N+1, D]
        # A one-stage model runs its tokenizer once per step; the others look their vectors up twice, which
        # keeps the float sums of their gradients (and so their results) as they were.
        shared = vectors if self.joint is not None else None
        hidden = self.encode(item_seq, positions, segments, shared)[has_target]  # [P, D]
        target = targets[has_target]  # [P]
        if self.config.loss == "ce":
            loss = full_softmax_cross_entropy(hidden, vectors[1:], target - 1)  # padding is never a class
        else:
            offset = torch.randint(1, self.config.n_items, target.shape, generator=generator)
            negative = (target.cpu() - 1 + offset) % self.config.n_items + 1  # any item but the target
            positive_logit = (hidden * vectors[target]).sum(-1)
            negative_logit = (hidden * vectors[negative.to(target.device)]).sum(-1)
            loss = (F.softplus(-positive_logit) + F.softplus(negative_logit)).mean()
        if self.joint is not None and self.config.joint_tokenizer_weight > 0:
            # one objective: the tokenizer's own losses on the items of this step
            items = torch.unique(torch.cat([item_seq[item_seq != 0], target]))
            loss = loss + self.config.joint_tokenizer_weight * self.joint.tokenizer_loss(items)
        return loss

    def last_hidden(self, item_seq: Tensor, vectors: Tensor | None = None) -> Tensor:
        """The hidden state [B, D] at each sequence's last item (`vectors`: see `encode`)."""
        last = ((item_seq != 0).sum(dim=1) - 1).clamp(min=0)  # [B]
        return self.encode(item_seq, vectors=vectors, query_positions=last)

    def score(self, item_seq: Tensor, out: Tensor | None = None) -> Tensor:
        """Scores [B, N+1] of every item as the next one; the padding column 0 is -inf.

        out: a [B, N+1] tensor to write them into. Reusing one across batches saves allocating a fresh [B, N+1]
        result, which on a CPU made the product up to 1.6x slower.
        """
        vectors = self.item_vectors()
        scores = torch.mm(self.last_hidden(item_seq, vectors), vectors.T, out=out)
        scores[:, 0] = float("-inf")
        return scores

    def checkpoint(self) -> dict[str, Any]:
        """What `from_checkpoint` needs to rebuild this model, frozen inputs included."""
        if self.joint is not None:  # the codes of these weights (training sets them before its last step)
            with torch.no_grad():
                self.item_vectors()
        vectors = getattr(self.similarity, "item_vectors", None)
        return {
            "config": asdict(self.config),
            "feature_dims": [p.in_features for p in self.feature_projections],
            "codes_shape": None if self.similarity is None else list(self.similarity.item_codes.shape),
            "code_vectors_shape": None if vectors is None else list(vectors.shape),
            "joint": None if self.joint is None else {**self.joint.checkpoint(), "inputs": self.joint_inputs},
            "state_dict": self.state_dict(),
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> "SASRec":
        config = ModelConfig(**checkpoint["config"])
        rows = config.n_items + 1
        features = [torch.zeros(rows, dim) for dim in checkpoint["feature_dims"]]
        codes = None if checkpoint["codes_shape"] is None else torch.zeros(checkpoint["codes_shape"])
        vectors_shape = checkpoint.get("code_vectors_shape")
        vectors = None if vectors_shape is None else torch.zeros(vectors_shape)
        saved_joint = checkpoint.get("joint")
        joint = None
        if saved_joint is not None:
            from bbqrec.models.joint import JointQuantizer

            joint = JointQuantizer.from_checkpoint(saved_joint)
        joint_inputs = () if saved_joint is None else saved_joint["inputs"]
        model = cls(config, features, codes, vectors, joint, joint_inputs)
        model.load_state_dict(checkpoint["state_dict"])
        return model
