"""Tokenizer inputs (embedding Parquet files, training sequences) and the training loop.

One epoch is one pass over the items in shuffled batches; each step also draws `seq_batch_size` training
sequences (cycling through a shuffled order) for the sequence-to-item contrast, whose items are encoded once
(behaviour-aligned encoders and quantizer only). Two optimisers alternate per step: the CLUB nets are fitted
by maximum likelihood on the detached batch, then the encoders, decoders, codebook and sequence encoder take
one step on the full loss. The CLUB nets are fitted even at `club_weight: 0`, so the log shows the bound the
encoders then leave alone (the `bbq-no-club` ablation).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from bbqrec.io import InputError
from bbqrec.quantize.tokenizer import BBQTokenizer, TokenizerConfig

log = logging.getLogger(__name__)

# The presence flag each embedding file carries besides a null embedding (behaviour has none).
PRESENCE_COLUMN = {"text": "has_text", "image": "has_image", "behavior": None}


@dataclass
class TokenizerInputs:
    item_ids: np.ndarray  # [N] int32, ascending
    features: dict[str, torch.Tensor]  # stream -> [N, D_s] float32 (zeros where missing)
    present: dict[str, torch.Tensor]  # stream -> [N] bool
    sequences: torch.Tensor | None = None  # [U, T] int64 item rows, right-padded with −1

    @property
    def input_dims(self) -> dict[str, int]:
        return {s: f.shape[1] for s, f in self.features.items()}


def read_embeddings(path: Path, stream: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item_ids [N], features [N, D] with zero rows where missing, present [N]) of one embedding file."""
    if not path.exists():
        raise InputError(f"{path}: missing embedding file for stream `{stream}`")
    frame = pl.read_parquet(path)
    for column in ("item_id", "embedding"):
        if column not in frame.columns:
            raise InputError(f"{path}: expected column `{column}`, found {frame.columns}")
    if not isinstance(frame.schema["embedding"], pl.Array):
        raise InputError(
            f"{path}: column `embedding` must be fixed_size_list<float32>, got {frame.schema['embedding']}"
        )
    item_ids = frame["item_id"].cast(pl.Int32).to_numpy()
    if len(item_ids) and not (np.diff(item_ids) > 0).all():
        bad = int(np.argmax(np.diff(item_ids) <= 0)) + 1
        raise InputError(
            f"{path}: row {bad}: item_id must be unique and ascending, got {item_ids[bad]} after {item_ids[bad - 1]}"
        )
    present = frame["embedding"].is_not_null().to_numpy()
    flag = PRESENCE_COLUMN[stream]
    if flag in frame.columns:
        mismatch = np.flatnonzero(frame[flag].fill_null(False).to_numpy() != present)
        if len(mismatch):
            raise InputError(f"{path}: row {mismatch[0]}: `{flag}` disagrees with whether `embedding` is null")
    dim = frame.schema["embedding"].size
    features = np.zeros((len(frame), dim), dtype=np.float32)
    if present.any():
        features[present] = frame.filter(pl.Series(present))["embedding"].to_numpy().astype(np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(features).all(1))
    if len(bad_rows):
        raise InputError(f"{path}: row {bad_rows[0]}: embedding has non-finite values")
    return item_ids, features, present


def add_behavior_argument(parser: argparse.ArgumentParser) -> None:
    """The `--behavior` option of the quantize and assign_sids stages (both must read the same files)."""
    parser.add_argument(
        "--behavior",
        type=Path,
        nargs="+",
        help="the behaviour embedding; several files are concatenated along the dimension (the workflow:"
        " embeddings/behavior/seed<k>.parquet, then seed<k+1000>, seed<k+2000>, ... for quantize.behavior_models > 1;"
        " default <embeddings-dir>/behavior.parquet)",
    )


def embedding_paths(
    embeddings_dir: str | Path, stream: str, behavior_paths: str | Path | Sequence[str | Path] | None = None
) -> list[Path]:
    """`[<embeddings_dir>/<stream>.parquet]`, or `behavior_paths` for the behaviour stream when given (the workflow
    keeps one behaviour embedding per seed, and reads several for `quantize.behavior_models` > 1)."""
    if stream == "behavior" and behavior_paths is not None:
        if isinstance(behavior_paths, (str, Path)):
            return [Path(behavior_paths)]
        return [Path(p) for p in behavior_paths]
    return [Path(embeddings_dir) / f"{stream}.parquet"]


def read_stream(paths: list[Path], stream: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`read_embeddings` of one file, or of several concatenated along the dimension: x_B = [e_1 ; e_2 ; ...]
    from behaviour SASRecs of different seeds (an item must be present in all of them)."""
    item_ids, features, present = read_embeddings(paths[0], stream)
    if len(paths) == 1:
        return item_ids, features, present
    for path in paths[1:]:
        ids, feats, pres = read_embeddings(path, stream)
        if not np.array_equal(ids, item_ids):
            raise InputError(f"{path}: item_id column differs from {paths[0]} (expected the same items)")
        features, present = np.concatenate([features, feats], axis=1), present & pres
    return item_ids, features * present[:, None], present


def load_embeddings(
    embeddings_dir: str | Path,
    streams: tuple[str, ...],
    behavior_paths: str | Path | Sequence[str | Path] | None = None,
) -> TokenizerInputs:
    """Read each stream's embeddings (`embedding_paths`); all must list the same items."""
    item_ids, features, present = None, {}, {}
    for stream in streams:
        paths = embedding_paths(embeddings_dir, stream, behavior_paths)
        ids, feats, pres = read_stream(paths, stream)
        if item_ids is None:
            item_ids, first_path = ids, paths[0]
        elif not np.array_equal(ids, item_ids):
            raise InputError(f"{paths[0]}: item_id column differs from {first_path} (expected the same items)")
        if not pres.any():
            raise InputError(
                f"{paths[0]}: no item has an embedding for stream `{stream}` (set the tokenizer option `modalities` to"
                " the content streams this dataset has)"
            )
        features[stream], present[stream] = torch.from_numpy(feats), torch.from_numpy(pres)
    return TokenizerInputs(item_ids=item_ids, features=features, present=present)


def load_trained_tokenizer(
    quantize_dir: str | Path,
    embeddings_dir: str | Path,
    behavior_paths: str | Path | Sequence[str | Path] | None = None,
) -> tuple[dict, BBQTokenizer, TokenizerInputs]:
    """The checkpoint `<quantize_dir>/tokenizer.pt` (with its provenance), the tokenizer it holds, and the
    tokenizer's input embeddings (`load_embeddings`), whose dimensions must be the ones it was trained on."""
    checkpoint_path = Path(quantize_dir) / "tokenizer.pt"
    if not checkpoint_path.exists():
        raise InputError(f"{checkpoint_path}: missing tokenizer checkpoint (run the quantize stage first)")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model = BBQTokenizer.from_checkpoint(checkpoint)
    inputs = load_embeddings(embeddings_dir, model.config.streams, behavior_paths)
    for stream, dim in inputs.input_dims.items():
        if dim != model.input_dims[stream]:
            paths = " + ".join(map(str, embedding_paths(embeddings_dir, stream, behavior_paths)))
            raise InputError(f"{paths}: embedding dim {dim}, the tokenizer was trained on {model.input_dims[stream]}")
    return checkpoint, model, inputs


def load_sequences(train_path: str | Path, item_ids: np.ndarray, max_len: int) -> torch.Tensor:
    """The last `max_len` items of each training sequence as item rows, right-padded with −1 ([U, T]).

    Sequences shorter than 2 items have no next item to predict and are left out.
    """
    train_path = Path(train_path)
    frame = pl.read_parquet(train_path)
    if "items" not in frame.columns:
        raise InputError(f"{train_path}: expected column `items` (list<i32>), found {frame.columns}")
    tails = frame.select(pl.col("items").list.tail(max_len).alias("seq")).filter(pl.col("seq").list.len() >= 2)
    lengths = tails["seq"].list.len().to_numpy().astype(np.int64)
    flat = tails["seq"].explode().cast(pl.Int64).to_numpy()
    rows = np.searchsorted(item_ids, flat)
    unknown = np.flatnonzero((rows >= len(item_ids)) | (item_ids[np.minimum(rows, len(item_ids) - 1)] != flat))
    if len(unknown):
        raise InputError(f"{train_path}: item_id {flat[unknown[0]]} is not in the embedding files")
    user = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded = np.full((len(lengths), int(lengths.max(initial=0))), -1, dtype=np.int64)
    padded[user, position] = rows
    return torch.from_numpy(padded)


# The columns every tokenizer log has, with their types (the loss terms depend on its streams and switches).
LOG_COLUMNS = {
    "epoch": pl.Int32,
    "total": pl.Float64,
    "level1_codes_used": pl.Int32,
    "dead_codes_reseeded": pl.Int32,
    "seconds": pl.Float64,
}


def train_tokenizer(inputs: TokenizerInputs, config: TokenizerConfig, seed: int) -> tuple[BBQTokenizer, pl.DataFrame]:
    """Train a tokenizer; returns the model (eval mode) and one log row per epoch with every loss term."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(inputs, config, seed)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def _train(inputs: TokenizerInputs, config: TokenizerConfig, seed: int) -> tuple[BBQTokenizer, pl.DataFrame]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    c = config
    model = BBQTokenizer(c, inputs.input_dims)
    features = {s: inputs.features[s] for s in c.streams}
    present = {s: inputs.present[s] for s in c.streams}
    model.set_input_statistics(features, present)
    model.kmeans_init(features, present, seed=seed)
    optimiser = torch.optim.Adam(model.main_parameters(), lr=c.lr, weight_decay=c.weight_decay)
    club_optimiser = torch.optim.Adam(model.club_parameters(), lr=c.club_lr)
    sequences = inputs.sequences if c.seq_weight > 0 and inputs.sequences is not None else None
    sequence_order, sequence_cursor = torch.empty(0, dtype=torch.long), 0
    n_items = len(inputs.item_ids)
    rows = []
    for epoch in range(c.epochs):
        start = time.perf_counter()
        model.train()
        usage = {b: torch.zeros(c.levels, c.codebook_size, dtype=torch.long) for b in model.quantizers}
        pools: dict[str, torch.Tensor] = {}
        sums: dict[str, float] = {}
        steps = 0
        for batch in torch.randperm(n_items, generator=generator).split(c.batch_size):
            x = {s: features[s][batch] for s in c.streams}
            encoded = model.encode(x, {s: present[s][batch] for s in c.streams})
            sequence_items, step_sequences = None, None
            if sequences is not None:
                if sequence_cursor >= len(sequence_order):
                    sequence_order, sequence_cursor = torch.randperm(len(sequences), generator=generator), 0
                step_sequences = sequences[sequence_order[sequence_cursor : sequence_cursor + c.seq_batch_size]]
                sequence_cursor += c.seq_batch_size
                # Encode each item of the step's sequences once; the sequences then index that set.
                items, local = torch.unique(step_sequences.clamp(min=0), return_inverse=True)
                step_sequences = torch.where(step_sequences >= 0, local, -1)
                sequence_items = model.encode(
                    {s: features[s][items] for s in c.streams},
                    {s: present[s][items] for s in c.streams},
                    specific=False,
                )

            fit = model.club_fit_loss(encoded)
            if fit is not None:
                club_optimiser.zero_grad()
                fit.backward()
                club_optimiser.step()
                sums["club_fit"] = sums.get("club_fit", 0.0) + fit.item()
            losses = model.losses(encoded, x, sequence_items, step_sequences)
            optimiser.zero_grad()
            losses.total.backward()
            optimiser.step()

            sums["total"] = sums.get("total", 0.0) + losses.total.item()
            for name, value in losses.terms.items():
                sums[name] = sums.get(name, 0.0) + value.item()
            _count_usage(model, encoded, usage, pools)
            steps += 1
        reseeded = 0
        if c.reseed_dead_codes and epoch < c.epochs - 1:
            for book, quantizer in model.quantizers.items():
                if book in pools and len(pools[book]):
                    reseeded += quantizer.reseed_dead_codes(usage[book], pools[book], generator)
        row = {"epoch": epoch, **{k: v / steps for k, v in sorted(sums.items())}}
        row["level1_codes_used"] = min(int((u[0] > 0).sum()) for u in usage.values())
        row["dead_codes_reseeded"] = reseeded
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        log.info("epoch %d %s", epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    model.eval()
    # epochs 0: the log has its columns and no row
    return model, pl.DataFrame(rows).cast(LOG_COLUMNS) if rows else pl.DataFrame(schema=LOG_COLUMNS)


def _count_usage(model: BBQTokenizer, encoded, usage, pools) -> None:
    """Add the batch's codes to the epoch usage counts; keep the batch residuals as the re-seeding pool."""
    c = model.config
    residuals: dict[str, list[torch.Tensor]] = {}
    for s in c.streams:
        book = "shared" if c.codebook == "shared" else s
        o = encoded[s]
        rows = o.present.bool()
        codes = o.quant.codes[rows]
        for level in range(c.levels):
            usage[book][level] += torch.bincount(codes[:, level], minlength=c.codebook_size)
        residuals.setdefault(book, []).append(o.quant.residuals[rows].detach())
    for book, parts in residuals.items():
        pools[book] = torch.cat(parts)
