"""Training of the sequence models: data tensors, item-side inputs and a plain loop (options: config.py).

Whole-sequence training: each user's training sequence is one row, the model predicts the next item at
every position (causal attention makes this the same as one row per prefix, with shared dropout masks).
Early stopping on validation NDCG@10 keeps the best weights. A checkpoint is written atomically after
every epoch (weights, optimiser, every random state, counters); a run killed at any point and started
again resumes from it and ends with exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import polars as pl
import torch

from bbqrec import distributed
from bbqrec.evaluation import EvalSet, mean_metrics, target_ranks
from bbqrec.io import InputError, atomic_path
from bbqrec.models import ModelConfig, SASRec, get_variant, pad_sequences
from bbqrec.training.config import NOT_TRAINING_OPTIONS, STREAM_ORDER, TrainConfig

if TYPE_CHECKING:
    from bbqrec.models.joint import JointQuantizer

logger = logging.getLogger(__name__)
SELECTION_METRIC = "ndcg@10"


@dataclass(frozen=True)
class TrainingSequences:
    """Left-aligned inputs [U, L] and next-item targets [U, L] (0 = no target) of the training sequences."""

    inputs: torch.Tensor
    targets: torch.Tensor

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, max_len: int, rows: str = "sequence") -> "TrainingSequences":
        """From a frame (user_id, items list); users with fewer than two items (no target) are dropped.

        rows="sequence": one row per user, its last max_len + 1 items, a target at every position.
        rows="prefix": one row per prefix of every sequence (RecBole's layout), the target after its last item.
        """
        if "items" not in frame.columns:
            raise InputError("training frame: missing column 'items'")
        if rows == "prefix":
            ends = frame.select(
                "items", end=pl.int_ranges(1, pl.col("items").list.len(), dtype=pl.Int32)
            ).explode("end").drop_nulls("end")
            inputs = pad_sequences(ends.select(pl.col("items").list.head(pl.col("end")))["items"], max_len)
            targets = torch.zeros_like(inputs)
            last = (inputs != 0).sum(dim=1) - 1
            targets[torch.arange(len(inputs)), last] = torch.from_numpy(
                ends.select(pl.col("items").list.get(pl.col("end")))["items"].to_numpy().astype(np.int64)
            )
            return cls(inputs, targets)
        padded = pad_sequences(frame["items"], max_len + 1)  # [U, L + 1]
        targets = padded[:, 1:]
        inputs = torch.where(targets != 0, padded[:, :-1], 0)  # the last item predicts nothing
        keep = (targets != 0).any(dim=1)
        return cls(inputs[keep], targets[keep])


def count_items(items_path: str | Path) -> int:
    """The number of items of items.parquet, whose item_id must be exactly 1..n."""
    ids = pl.read_parquet(items_path, columns=["item_id"])["item_id"]
    n_items = ids.len()
    if n_items == 0 or ids.min() != 1 or ids.max() != n_items or ids.n_unique() != n_items:
        raise InputError(f"{items_path}: item_id must be the dense ids 1..{n_items} (one row per item)")
    return n_items


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # CPU and every CUDA device


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_trained_model(path: str | Path, variant: str, device: str = "cpu") -> SASRec:
    """The model a train run wrote to `path` (model.pt), on `device`; an InputError if it holds another variant."""
    return load_trained_run(path, variant, device)[0]


def load_trained_run(path: str | Path, variant: str, device: str = "cpu") -> tuple[SASRec, dict[str, Any]]:
    """load_trained_model's model and the train run's provenance (seed, versions, code, CPU, config)."""
    saved = _load_saved_run(path, variant)
    return SASRec.from_checkpoint(saved).to(resolve_device(device)), saved.get("provenance", {})


def _load_saved_run(path: str | Path, variant: str) -> dict[str, Any]:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("variant") != variant:
        raise InputError(f"{path}: holds variant {saved.get('variant')!r}, expected {variant!r}")
    return saved


# --- item-side inputs (frozen, read from the upstream stages' files) ---


def load_item_embeddings(path: str | Path, n_items: int) -> torch.Tensor:
    """embeddings.parquet (item_id, embedding) -> [n_items + 1, D]; row 0 and items without a vector are 0."""
    frame = pl.read_parquet(path, columns=["item_id", "embedding"]).filter(pl.col("embedding").is_not_null())
    if frame.is_empty():
        raise InputError(f"{path}: no item has an embedding")
    ids = frame["item_id"].to_numpy().astype(np.int64)
    if ids.min() < 1 or ids.max() > n_items:
        raise InputError(f"{path}: item_id outside 1..{n_items}")
    vectors = np.stack(frame["embedding"].to_numpy())
    out = torch.zeros(n_items + 1, vectors.shape[1])
    out[torch.from_numpy(ids)] = torch.from_numpy(vectors).float()
    return out


def load_semantic_ids(path: str | Path, n_items: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """semantic_ids.parquet -> (streams, codes [n_items + 1, M, levels], quantized [n_items + 1, M, d]).

    Streams are ordered text, image, behavior. An item missing from a stream gets zero vectors and codes
    that match no other item (-item_id), so it falls in bucket 0 of every pair but its own.
    """
    frame = pl.read_parquet(path)
    levels = sorted((c for c in frame.columns if re.fullmatch(r"c\d+", c)), key=lambda c: int(c[1:]))
    missing = {"item_id", "stream", "quantized"} - set(frame.columns)
    if missing or not levels:
        raise InputError(f"{path}: expected columns item_id, stream, c1..cL, quantized; missing {sorted(missing) or 'c1'}")
    unknown = set(frame["stream"].unique()) - set(STREAM_ORDER)
    if unknown:
        raise InputError(f"{path}: unknown stream(s) {sorted(unknown)}; expected {STREAM_ORDER}")
    streams = [s for s in STREAM_ORDER if s in set(frame["stream"])]
    ids = frame["item_id"].to_numpy().astype(np.int64)
    if ids.min() < 1 or ids.max() > n_items:
        raise InputError(f"{path}: item_id outside 1..{n_items}")
    stream_index = frame["stream"].replace_strict({s: i for i, s in enumerate(streams)}).to_numpy().astype(np.int64)
    codes = -torch.arange(n_items + 1)[:, None, None].repeat(1, len(streams), len(levels))
    codes[ids, stream_index] = torch.from_numpy(frame.select(levels).to_numpy().astype(np.int64))
    quantized = np.stack(frame["quantized"].to_numpy())
    vectors = torch.zeros(n_items + 1, len(streams), quantized.shape[1])
    vectors[ids, stream_index] = torch.from_numpy(quantized).float()
    return streams, codes, vectors


def load_joint_quantizer(
    quantize_dir: str | Path,
    embeddings_dir: str | Path,
    behavior_paths: Sequence[str | Path] | None,
    n_items: int,
) -> JointQuantizer:
    """The trained tokenizer of `quantize_dir` with its inputs, for one-stage training (bbqrec.models.joint)."""
    from bbqrec.models.joint import JointQuantizer  # the tokenizer (faiss, scipy): only this path needs it
    from bbqrec.quantize.train import load_trained_tokenizer

    _, tokenizer, inputs = load_trained_tokenizer(quantize_dir, embeddings_dir, behavior_paths)
    if not np.array_equal(inputs.item_ids, np.arange(1, n_items + 1)):
        raise InputError(f"{embeddings_dir}: the tokenizer's embeddings must list every item 1..{n_items} in order")
    return JointQuantizer(tokenizer, inputs.features, inputs.present)


def build_model(
    variant: str,
    config: TrainConfig,
    n_items: int,
    semantic_ids: str | Path | None = None,
    text_embeddings: str | Path | None = None,
    image_embeddings: str | Path | None = None,
    joint: JointQuantizer | None = None,
) -> SASRec:
    """The model of `variant` (see bbqrec.models.VARIANTS) with its item-side inputs.

    The semantic-ID variants add the quantized vectors of the streams in `config.quantized_inputs` that the
    tokenizer has (their codes all feed the similarity bias), and with `config.content_inputs` the continuous
    text/image embeddings too. With `config.tokenizer_training` "joint" the codes and vectors come from `joint`
    (`load_joint_quantizer`) and change as it trains; otherwise they are the frozen ones of `semantic_ids`.
    """
    spec = get_variant(variant)
    one_stage = spec.item_inputs == "sids" and config.tokenizer_training == "joint"
    if one_stage and joint is None:
        raise InputError(
            f"variant {variant}: tokenizer_training joint needs the trained tokenizer and its inputs"
            " (--quantize-dir, --embeddings-dir, --behavior)"
        )
    if spec.item_inputs == "sids" and not one_stage and semantic_ids is None:
        raise InputError(f"variant {variant}: needs sids/{spec.tokenizer}/semantic_ids.parquet (--sids)")
    features, codes, vectors, joint_inputs = [], None, None, []
    if spec.item_inputs == "embeddings" or (spec.item_inputs == "sids" and config.content_inputs):
        paths = [p for p in (text_embeddings, image_embeddings) if p is not None]
        if not paths:
            raise InputError(f"variant {variant}: needs text and/or image embeddings (--text / --image)")
        features = [load_item_embeddings(p, n_items) for p in paths]
    if one_stage:
        with torch.no_grad():
            start = joint()
        streams, codes, vectors = joint.streams, start.codes, start.vectors
        joint_inputs = [m for m, stream in enumerate(streams) if stream in config.quantized_inputs]
    elif spec.item_inputs == "sids":
        streams, codes, vectors = load_semantic_ids(semantic_ids, n_items)
        features += [vectors[:, m] for m, stream in enumerate(streams) if stream in config.quantized_inputs]
    similarity = spec.similarity and (config.similarity or spec.similarity)
    model_options = {f.name for f in fields(ModelConfig)} - {"n_items", "loss", "similarity"}
    model_config = ModelConfig(
        n_items=n_items,
        loss=spec.loss,
        similarity=similarity,
        **{key: getattr(config, key) for key in model_options},
    )
    return SASRec(
        model_config,
        features,
        codes if similarity else None,
        vectors if similarity else None,
        joint if one_stage else None,
        joint_inputs,
    )


# --- the loop ---


def pack_rows(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Pack a batch of left-aligned sequences [B, L] into fewer rows of the same width (first-fit decreasing).

    Returns (inputs, targets, positions, segments), each [R, L] with R <= B: every sequence keeps its
    positions 0..len-1 and gets its own segment id (1..B; 0 = empty slot), so attention stays inside it and
    the loss is the one of the unpacked batch (dropout draws aside); only the compute on padding is saved.
    """
    width = inputs.shape[1]
    lengths = (inputs != 0).sum(dim=1).tolist()
    row_of, offset_of, free = [0] * len(lengths), [0] * len(lengths), []
    for sequence in sorted(range(len(lengths)), key=lambda u: -lengths[u]):
        row = next((r for r, space in enumerate(free) if space >= lengths[sequence]), len(free))
        if row == len(free):
            free.append(width)
        row_of[sequence], offset_of[sequence] = row, width - free[row]
        free[row] -= lengths[sequence]
    sequence, position = (inputs != 0).nonzero(as_tuple=True)
    rows = torch.tensor(row_of)[sequence]
    columns = torch.tensor(offset_of)[sequence] + position
    packed = [torch.zeros(len(free), width, dtype=torch.long) for _ in range(4)]
    for out, values in zip(packed, (inputs[sequence, position], targets[sequence, position], position, sequence + 1)):
        out[rows, columns] = values
    return tuple(packed)


@dataclass
class FitResult:
    log: pl.DataFrame  # one row per epoch
    best_epoch: int
    best_metric: float  # validation NDCG@10 of the best epoch


def refit_schedule(log: pl.DataFrame, best_epoch: int, source: str = "log.parquet") -> list[float]:
    """The learning rate of each epoch up to `best_epoch` of a finished run's log (epoch, lr): what a refit on
    all the data replays, so that it trains as long, at the same rates, as the run that validation stopped."""
    check = log.filter(pl.col("epoch") <= best_epoch).sort("epoch") if "epoch" in log.columns else None
    if check is None or "lr" not in log.columns:
        raise InputError(f"{source}: expected columns epoch and lr (a train run's log)")
    if best_epoch < 1 or check["epoch"].to_list() != list(range(1, best_epoch + 1)):
        raise InputError(f"{source}: expected one row for each epoch 1..{best_epoch} (the run's best epoch)")
    return check["lr"].to_list()


def load_refit_schedule(run_dir: str | Path, variant: str) -> list[float]:
    """`refit_schedule` of a finished train run's folder (model.pt: variant, best_epoch; log.parquet)."""
    run_dir = Path(run_dir)
    saved = _load_saved_run(run_dir / "model.pt", variant)
    return refit_schedule(pl.read_parquet(run_dir / "log.parquet"), int(saved["best_epoch"]), str(run_dir / "log.parquet"))


def replay_early_stopping(curve: list[float], patience: int) -> tuple[int, int]:
    """(epochs run, best epoch), 1-based, had `fit` stopped after `patience` epochs without a new best.

    `curve` is a logged run's validation NDCG@10 per epoch. Patience only decides when training stops, not what
    an epoch does, so for a patience up to the logged run's the replay is exact: a run with that patience and
    the same seed trains the same first epochs and keeps the same best weights (benchmarks/bench_patience.py).
    """
    if patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    best_metric, best_epoch, bad_epochs = float("-inf"), 0, 0
    for epoch, metric in enumerate(curve, 1):
        if metric > best_metric:  # the rule of fit(): strictly better
            best_metric, best_epoch, bad_epochs = metric, epoch, 0
        else:
            bad_epochs += 1
            if bad_epochs == patience:
                return epoch, best_epoch
    return len(curve), best_epoch


def train_epoch(
    model: SASRec,
    data: TrainingSequences,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    batch_size: int,
    loss_fn: Callable[..., torch.Tensor] | None = None,
) -> float:
    """One pass over the training rows in a random order; returns the mean loss per predicted position.

    With several processes, `loss_fn` is the model's DDP loss (bbqrec.distributed.data_parallel_loss): every
    rank takes rank 0's order and trains on its share of each batch of `batch_size` rows, its loss weighed so
    that the gradient averaged over the ranks is the single-process one (the mean over the batch's targets).
    """
    model.train()
    loss_fn = loss_fn or model.loss
    world = distributed.world_size()
    device = next(model.parameters()).device
    order = distributed.broadcast_(torch.randperm(len(data.inputs), generator=generator))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        batch_targets = int((data.targets[batch] != 0).sum())
        rows = batch[distributed.shard(len(batch))]
        own = len(rows) > 0  # a last batch may have fewer rows than ranks: the others still join the backward
        rows = rows if own else batch[:1]
        inputs, targets = data.inputs[rows], data.targets[rows]
        width = int((inputs != 0).sum(dim=1).max())  # left-aligned: trailing all-padding columns change nothing
        inputs, targets, positions, segments = (t.to(device) for t in pack_rows(inputs[:, :width], targets[:, :width]))
        loss = loss_fn(inputs, targets, generator, positions, segments)
        n_targets = int((targets != 0).sum()) if own else 0
        optimizer.zero_grad(set_to_none=True)
        # DDP divides the summed gradients by `world`; one process: the weight is exactly 1
        (loss * (n_targets * world / batch_targets)).backward()
        optimizer.step()
        total += loss.item() * n_targets
        count += n_targets
    total, count = distributed.sum_all([total, count])
    return total / count


def fit(
    model: SASRec,
    train: TrainingSequences,
    valid: EvalSet | None,
    config: TrainConfig,
    seed: int,
    checkpoint_path: str | Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    learning_rates: Sequence[float] | None = None,
) -> FitResult:
    """Train until validation NDCG@10 has not improved for `patience` epochs (or `max_epochs`).

    The model ends with the best epoch's weights. With `checkpoint_path`, an existing checkpoint of the same
    run (same config, seed and model) is resumed, and a new one is written after each epoch, before
    `on_epoch(log_row)` is called. A checkpoint of another run is ignored and overwritten.

    A refit (`valid` None, `learning_rates` given; see `refit_schedule`): exactly len(learning_rates) epochs,
    epoch e at learning_rates[e - 1], no validation; the model ends with the last epoch's weights
    (best_epoch = that count, best_metric NaN).

    With `config.processes` > 1, every process started by torchrun calls fit inside
    bbqrec.distributed.process_group: they train one model together (see `train_epoch`), share the
    validation, stop together and end with the same weights; rank 0 writes the checkpoint.
    """
    refit = learning_rates is not None
    if refit == (valid is not None):
        raise ValueError("fit: give exactly one of a validation set (early stopping) and learning_rates (a refit)")
    world = distributed.world_size()
    if config.processes != world:
        raise InputError(
            f"config train.processes is {config.processes} but {world} process(es) run: start train.py with "
            f"torchrun --standalone --nproc_per_node {config.processes} (the train rule does)"
        )
    torch.set_num_threads(config.threads)
    model.to(distributed.local_device(resolve_device(config.device)))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(distributed.rank_seed(seed))  # user order and sampled negatives
    if distributed.rank() > 0:  # dropout masks of its own (rank 0 keeps the single-process draws)
        torch.manual_seed(distributed.rank_seed(seed))
    # a refit has no metric, and its result is the live state dict of its last epoch (no copy kept)
    state = {"epoch": 0, "best_metric": float("nan") if refit else -1.0, "best_epoch": 0, "bad_epochs": 0, "log": []}
    best_weights = model.state_dict() if refit else copy.deepcopy(model.state_dict())
    run = {  # what makes a checkpoint this run's; resources and recommendation options do not
        "config": {k: v for k, v in asdict(config).items() if k not in NOT_TRAINING_OPTIONS},
        "seed": seed,
        "model": asdict(model.config),
    }
    if world > 1:  # split batches and per-rank draws: another run (no key for one process: older checkpoints resume)
        run["processes"] = world
    if not config.lr_decay_patience:  # a constant rate: the run of a checkpoint written before the decay options
        for key in ("lr_decay_patience", "lr_decay_factor"):
            del run["config"][key]
    if refit:
        run["learning_rates"] = [float(lr) for lr in learning_rates]
    saved = None
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if saved["run"] != run:
            logger.warning("%s belongs to another run (config, seed or model differ): starting afresh", checkpoint_path)
            saved = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        _set_rng_state(generator, saved if distributed.rank() == 0 else saved["other_ranks"][distributed.rank() - 1])
        best_weights = saved["best_weights"]
        state = saved["state"]
    loss_fn = distributed.data_parallel_loss(model)
    epochs = len(learning_rates) if refit else config.max_epochs
    while state["epoch"] < epochs and state["bad_epochs"] < config.patience:
        if refit:
            for group in optimizer.param_groups:
                group["lr"] = learning_rates[state["epoch"]]
        started = time.perf_counter()
        loss = train_epoch(model, train, optimizer, generator, config.batch_size, loss_fn)
        trained = time.perf_counter()
        state["epoch"] += 1
        if refit:  # no validation: the last epoch is the result (the state dict is live, not a copy)
            metrics = {}
            state["best_epoch"], best_weights = state["epoch"], model.state_dict()
        else:
            # every rank gets the same metrics, hence takes the same best-epoch and stopping decisions
            metrics = _validate(model, valid, config)
            if metrics[SELECTION_METRIC] > state["best_metric"]:
                state.update(best_metric=metrics[SELECTION_METRIC], best_epoch=state["epoch"], bad_epochs=0)
                best_weights = copy.deepcopy(model.state_dict())
            else:
                state["bad_epochs"] += 1
        lr = optimizer.param_groups[0]["lr"]  # this epoch's; a decay below applies from the next
        if config.lr_decay_patience and state["bad_epochs"] and state["bad_epochs"] % config.lr_decay_patience == 0:
            for group in optimizer.param_groups:  # saved with the optimizer: a resumed run keeps it
                group["lr"] *= config.lr_decay_factor
        row = {
            "epoch": state["epoch"],
            "loss": loss,
            **{f"valid_{name.replace('@', '_')}": value for name, value in metrics.items()},
            "seconds": trained - started,
            "valid_seconds": time.perf_counter() - trained,
            "lr": lr,
        }
        state["log"].append(row)
        if checkpoint_path is not None:
            rng = distributed.gather_objects(_rng_state(generator))  # each rank resumes its own draws
            if distributed.is_main():
                _save_checkpoint(checkpoint_path, run, model, optimizer, rng, best_weights, state)
        if on_epoch is not None:
            on_epoch(row)
    model.load_state_dict(best_weights)
    return FitResult(pl.DataFrame(state["log"]), state["best_epoch"], state["best_metric"])


def _validate(model: SASRec, valid: EvalSet, config: TrainConfig) -> dict[str, float]:
    """Validation metrics; with several processes each ranks a share of the users and all get every rank."""
    share = distributed.shard(len(valid.targets))
    mine = EvalSet(valid.user_ids[share], valid.histories[share], valid.targets[share])
    ranks = target_ranks(model, mine, config.eval_batch_size, config.exclude_history)
    return mean_metrics(torch.cat(distributed.gather_objects(ranks)), config.ks)


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    return {
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(generator: torch.Generator, saved: dict[str, Any]) -> None:
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    if torch.cuda.is_available() and saved["cuda_rng"]:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])


def _save_checkpoint(path, run, model, optimizer, rng, best_weights, state) -> None:
    checkpoint = {
        "run": run,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        **rng[0],  # rank 0's random states, at the keys a single-process checkpoint has always had
        "other_ranks": rng[1:],
        "best_weights": best_weights,
        "state": state,
    }
    with atomic_path(path, ".pt") as tmp:
        torch.save(checkpoint, tmp)
