"""Full ranking over all items: target ranks for the metrics, and top-k recommendations.

Scores are the products of each user's last hidden state with every item's vector, as the model's `score`
makes them (padding column 0 is -inf, so padding is never ranked), computed a block of items at a time on a
CPU. With `exclude_history`, items of the user's history are removed from the ranking, except the target itself.
Recommendations are exact either way: by matrix products over all items, or by a faiss IndexFlatIP search (exact
inner product) whose candidates are filtered the same way. Ties are broken by the smaller item id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch
from torch import Tensor

from bbqrec.io import InputError
from bbqrec.models.sasrec import SASRec, pad_sequences
from bbqrec.training.config import RECOMMEND_BACKENDS

if TYPE_CHECKING:
    import faiss

# Items per block of scores that `target_ranks` counts while they are in a CPU's cache: [256 users, 2,048] float32
# is 2 MB. A GPU takes all items in one block.
ITEMS_PER_BLOCK = 2048


@dataclass(frozen=True)
class UserHistories:
    """Users and their left-aligned item histories [U, L]: what `recommend` ranks all items for."""

    user_ids: Tensor
    histories: Tensor

    @classmethod
    def from_sequences(cls, frame: pl.DataFrame, max_len: int, source: str = "sequence frame") -> UserHistories:
        """From a frame of (user_id, items list): each user's whole sequence, cut to its last max_len."""
        check_columns(frame, ("user_id", "items"), source)
        _check_not_empty(frame, "items", source)
        return cls(_user_ids(frame), pad_sequences(frame["items"], max_len))


@dataclass(frozen=True)
class EvalSet(UserHistories):
    """One evaluation split as tensors: user_ids [U], left-aligned histories [U, L], targets [U]."""

    targets: Tensor

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, max_len: int, source: str = "evaluation frame") -> EvalSet:
        """From a valid/test frame (user_id, history list, target); histories cut to their last max_len."""
        check_columns(frame, ("user_id", "history", "target"), source)
        _check_not_empty(frame, "history", source)
        return cls(
            _user_ids(frame),
            pad_sequences(frame["history"], max_len),
            torch.from_numpy(frame["target"].to_numpy().astype(np.int64)),
        )


def check_columns(frame: pl.DataFrame, columns: tuple[str, ...], source: str) -> None:
    """An InputError naming `source` and the missing columns, if `frame` lacks any of `columns`."""
    missing = set(columns) - set(frame.columns)
    if missing:
        raise InputError(f"{source}: missing column(s) {sorted(missing)}; expected {', '.join(columns)}")


def _check_not_empty(frame: pl.DataFrame, column: str, source: str) -> None:
    empty = frame.with_row_index("row").filter(pl.col(column).list.len().fill_null(0) == 0)
    if empty.height:
        raise InputError(f"{source}, row {empty['row'][0]}: empty {column} (user {empty['user_id'][0]})")


def _user_ids(frame: pl.DataFrame) -> Tensor:
    return torch.from_numpy(frame["user_id"].to_numpy().astype(np.int64))


def _batches(data: UserHistories, batch_size: int, device: torch.device):
    """(users [B], histories [B, L']) in order of history length, each batch cut to its longest history.

    Left-aligned histories lose nothing by the cut; grouping by length saves the compute on padding.
    """
    lengths = (data.histories != 0).sum(dim=1)
    order = torch.sort(lengths, stable=True).indices
    for start in range(0, len(order), batch_size):
        users = order[start : start + batch_size]
        width = int(lengths[users].max())
        yield users, data.histories[users, :width].to(device)


def _padded_rows(lists: pl.Series, rows: Tensor) -> Tensor:
    """Rows `rows` of a list column as a left-aligned [len(rows), longest of them] tensor (0 = padding)."""
    batch = lists.gather(rows.numpy())
    return pad_sequences(batch, max(1, int(batch.list.len().max() or 0)))


@torch.no_grad()
def target_ranks(
    model: SASRec, data: EvalSet, batch_size: int = 256, exclude_history: bool = False
) -> Tensor:
    """1-based rank [U] of each target among all items, its place in `recommend`'s list: 1 + the number of
    items scored higher + the number scored equal with a smaller id. Scores are counted a block of items at a
    time (`ITEMS_PER_BLOCK`), and a row with a tie from the whole batch's scores, as `recommend` ranks them."""
    model.eval()
    device = next(model.parameters()).device
    vectors = model.item_vectors()  # [N+1, D]; row 0 (padding) is scored -inf
    ranks = torch.zeros(len(data.targets), dtype=torch.long)
    buffers = None  # the first batch is the largest: later ones write into its blocks
    for users, histories in _batches(data, batch_size, device):
        hidden = model.last_hidden(histories, vectors)  # [B, D]
        targets = data.targets[users].to(device)
        if buffers is None:
            buffers = hidden.new_empty((2, len(users), _items_per_block(vectors)))
        excluded = histories if exclude_history else None
        ahead, counted = _items_ahead_by_blocks(hidden, vectors, targets, excluded, buffers[:, : len(users)])
        if not bool(counted.all()):  # a tie with the target or a NaN: from whole rows
            rows = ~counted
            # the whole batch's product, then its rows: the scores of those rows alone may round differently
            scores = torch.mm(hidden, vectors.T)[rows]
            scores[:, 0] = float("-inf")
            target_score = scores.gather(1, targets[rows, None])  # before any exclusion
            if excluded is not None:
                scores.scatter_(1, excluded[rows], float("-inf"))
            ahead[rows] = _items_ahead(scores, target_score, targets[rows, None], torch.empty_like(scores))
        ranks[users] = ahead.cpu() + 1
    return ranks


def _items_ahead_by_blocks(
    hidden: Tensor, vectors: Tensor, targets: Tensor, excluded: Tensor | None, buffers: Tensor
) -> tuple[Tensor, Tensor]:
    """Per row, the number of items scored higher than the target, and whether that count is the whole answer
    ([B] long, [B] bool): the scores [B, N+1] of `hidden` [B, D] against `vectors` [N+1, D] are made and
    counted a block of items at a time (the width of `buffers`), in cache, never as a whole matrix.

    The count is by float sums, as in `_items_ahead`. It is the whole answer where the target's own column
    holds its score (computed apart, from the same product of the same two vectors) and no other item ties
    with it; other rows (False) need `_items_ahead` on whole rows. `excluded` [B, L]: item ids scored -inf, the
    target's own column included (its score is kept, and its column then counts as lower); `buffers`
    [2, B, block]: scores and signs.
    """
    target_score = torch.mm(hidden, vectors[targets].T).diagonal()[:, None]  # [B, 1]
    difference = hidden.new_zeros(len(hidden))  # sum of sign(score - target score): higher - lower
    magnitude = hidden.new_zeros(len(hidden))  # sum of |sign|: higher + lower
    own_column = torch.zeros(len(hidden), dtype=torch.bool, device=hidden.device)
    users = torch.arange(len(hidden), device=hidden.device)
    for start, scores in _score_blocks(hidden, vectors, buffers[0]):
        width = scores.shape[1]
        here = (targets >= start) & (targets < start + width)
        own_column[here] = scores[users[here], targets[here] - start] == target_score[here, 0]
        if excluded is not None:
            _exclude_in_block(scores, excluded, start)
        signs = torch.sub(scores, target_score, out=buffers[1, :, :width]).sign_()
        difference += signs.sum(dim=1)
        magnitude += signs.abs_().sum(dim=1)
    # the one equal score is the target's own column, or none where it was excluded; NaN sums fail both tests
    kept = torch.ones_like(own_column) if excluded is None else (excluded != targets[:, None]).all(dim=1)
    counted = own_column & (len(vectors) - magnitude == kept.to(magnitude.dtype))
    return ((difference + magnitude) / 2).long().masked_fill(~counted, 0), counted


def _items_per_block(vectors: Tensor) -> int:
    """How many items `_score_blocks` scores at a time: `ITEMS_PER_BLOCK` on a CPU, all of them on a GPU."""
    return min(ITEMS_PER_BLOCK, len(vectors)) if vectors.device.type == "cpu" else len(vectors)


def _score_blocks(hidden: Tensor, vectors: Tensor, buffer: Tensor):
    """(start, scores [B, width]) of `hidden` [B, D] against each block of `vectors` [N+1, D], written into
    `buffer` [B, block]: the score matrix a block of items at a time. Padding (column 0) is scored -inf."""
    n_columns, block = len(vectors), buffer.shape[-1]
    for start in range(0, n_columns, block):
        width = min(block, n_columns - start)
        scores = torch.mm(hidden, vectors[start : start + width].T, out=buffer[:, :width])
        if start == 0:
            scores[:, 0] = float("-inf")  # padding is never ranked
        yield start, scores


def _exclude_in_block(scores: Tensor, excluded: Tensor, start: int) -> None:
    """Scores -inf, in place, at the ids of `excluded` [B, L] that fall in the block of items start.. of `scores`
    [B, width]; the other columns keep their score (amin against +inf)."""
    width = scores.shape[1]
    column = excluded - start
    inside = (column >= 0) & (column < width)
    marks = torch.where(inside, float("-inf"), float("inf"))
    scores.scatter_reduce_(1, column.clamp(0, width - 1), marks, "amin")


def _items_ahead(scores: Tensor, target_score: Tensor, targets: Tensor, signs: Tensor) -> Tensor:
    """Per row, the number of items scored higher than the target or equal to it with a smaller id ([B] long).

    Counted with float sums, several times faster on a CPU than boolean masks: with s = sign(score - target
    score) in `signs`, sum(s) = higher - lower and sum(|s|) = higher + lower, so higher = (sum(s) + sum(|s|)) / 2,
    exact in float32 (counts far below 2**24). Where the target is not the one item of its score (a tie, an
    excluded target, a NaN or infinite score), the row is counted from the masks instead.
    """
    torch.sub(scores, target_score, out=signs).sign_()
    difference, magnitude = signs.sum(dim=1), signs.abs_().sum(dim=1)
    equal = scores.shape[1] - magnitude
    only_target = (equal == 1) & (signs.gather(1, targets)[:, 0] == 0)  # |s| of the target's own column
    ahead = ((difference + magnitude) / 2).long()  # rows with a NaN are not only_target: recounted below
    if not bool(only_target.all()):
        rows = ~only_target
        row_scores, row_target_score = scores[rows], target_score[rows]
        smaller_id = torch.arange(scores.shape[1], device=scores.device) < targets[rows]
        higher_or_tied = (row_scores > row_target_score) | ((row_scores == row_target_score) & smaller_id)
        ahead[rows] = higher_or_tied.sum(dim=1)
    return ahead


@torch.no_grad()
def recommend(
    model: SASRec,
    data: UserHistories,
    k: int = 20,
    batch_size: int = 256,
    exclude_history: bool = False,
    backend: str = "matmul",
    seen: pl.Series | None = None,
) -> pl.DataFrame:
    """Top-k items per user as a frame (user_id i32, rank i32 1..k, item_id i32, score f32); with
    `exclude_history`, a user with fewer than k items left gets only those.

    seen: a list column of item ids, one row per user of `data`, that `exclude_history` leaves out instead of the
    histories, e.g. whole sequences longer than the model's window (padded one batch at a time: a few very long
    sequences do not make a [users, longest] tensor).
    """
    if backend not in RECOMMEND_BACKENDS:
        raise InputError(f"config key recommend_backend: expected one of {RECOMMEND_BACKENDS}, got {backend!r}")
    if not 1 <= k <= model.config.n_items:
        raise InputError(f"config key recommend_k: expected 1..{model.config.n_items} (the number of items), got {k}")
    if seen is not None and len(seen) != len(data.user_ids):
        raise ValueError(f"seen has {len(seen)} rows, expected one per user ({len(data.user_ids)})")
    model.eval()
    device = next(model.parameters()).device
    index = None
    if backend == "faiss":
        try:  # only this backend needs faiss (a GPU machine may have torch but no faiss build)
            import faiss
        except ImportError as error:
            raise InputError(
                "config key recommend_backend: 'faiss' needs the faiss package (faiss-cpu, or faiss-gpu with CUDA); "
                "install it or use 'matmul' (the same recommendations)"
            ) from error
        faiss.omp_set_num_threads(torch.get_num_threads())  # the stage's thread budget, not every core
        catalogue = model.item_vectors()[1:].float().cpu().numpy()  # items 1..N; padding never indexed
        index = faiss.IndexFlatIP(catalogue.shape[1])
        index.add(np.ascontiguousarray(catalogue))
    else:  # exact products, a block of items at a time (`_top_k_by_blocks`)
        vectors = model.item_vectors()  # [N+1, D]
        buffer = vectors.new_empty((min(batch_size, len(data.user_ids)), _items_per_block(vectors)))
    items = torch.zeros(len(data.user_ids), k, dtype=torch.long)
    scores = torch.zeros(len(data.user_ids), k)
    for users, histories in _batches(data, batch_size, device):
        excluded = None
        if exclude_history:
            excluded = histories if seen is None else _padded_rows(seen, users).to(device)
        if index is None:
            hidden = model.last_hidden(histories, vectors)
            batch_scores, batch_items = _top_k_by_blocks(hidden, vectors, k, excluded, buffer[: len(users)])
        else:
            batch_scores, batch_items = _faiss_top_k(model, index, histories, k, excluded)
        items[users], scores[users] = batch_items.cpu(), batch_scores.cpu().float()
    n_users, width = items.shape
    # A -inf score is an excluded item (or the padding column) that filled a place only because fewer than k
    # items were left for that user: it is no recommendation, so the user gets fewer than k rows.
    listed = (scores != float("-inf")).flatten().numpy()
    return pl.DataFrame(
        {
            "user_id": data.user_ids.repeat_interleave(width).numpy().astype(np.int32)[listed],
            "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), n_users)[listed],
            "item_id": items.flatten().numpy().astype(np.int32)[listed],
            "score": scores.flatten().numpy().astype(np.float32)[listed],
        }
    )


def _top_k_by_blocks(
    hidden: Tensor, vectors: Tensor, k: int, excluded: Tensor | None, buffer: Tensor
) -> tuple[Tensor, Tensor]:
    """`_top_k` of the scores [B, N+1] of `hidden` [B, D] against `vectors` [N+1, D], padding and `excluded` ids
    scored -inf, made a block of items at a time (the width of `buffer` [B, block]) and never as a whole matrix.

    Each block's k best join the k best so far in one stable sort by score: the earlier blocks' items, which
    have the smaller ids, come first among equal scores, so ties go to the smaller id as over whole rows.
    """
    best_scores, best_items = None, None
    for start, scores in _score_blocks(hidden, vectors, buffer):
        if excluded is not None:
            _exclude_in_block(scores, excluded, start)
        block_scores, block_items = _top_k(scores, min(k, scores.shape[1]))
        block_items += start
        if best_scores is None:
            best_scores, best_items = block_scores, block_items
            continue
        joined_scores, joined_items = torch.cat([best_scores, block_scores], 1), torch.cat([best_items, block_items], 1)
        order = torch.sort(joined_scores, dim=1, descending=True, stable=True).indices[:, :k]
        best_scores, best_items = joined_scores.gather(1, order), joined_items.gather(1, order)
    return best_scores, best_items


def _top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k best columns of each row, ties broken by the smaller column index: ([B, k] scores, [B, k] ids).

    topk, then a stable re-sort of its k entries by (score desc, id asc); the rare row with a tie across
    the k-th place (more than k entries >= the k-th score) gets a full stable sort instead.
    """
    values, columns = torch.topk(scores, k, dim=1)
    by_id = columns.argsort(dim=1)
    values, columns = values.gather(1, by_id), columns.gather(1, by_id)
    by_score = torch.sort(values, dim=1, descending=True, stable=True).indices
    values, columns = values.gather(1, by_score), columns.gather(1, by_score)
    tied = (scores >= values[:, -1:]).sum(dim=1) > k
    if tied.any():
        full_values, full_columns = torch.sort(scores[tied], dim=1, descending=True, stable=True)
        values[tied], columns[tied] = full_values[:, :k], full_columns[:, :k]
    return values, columns


def _faiss_top_k(
    model: SASRec, index: faiss.Index, histories: Tensor, k: int, excluded: Tensor | None
) -> tuple[Tensor, Tensor]:
    # Ask for enough candidates that k remain after dropping the history, then reuse the exact tie-break.
    queries = model.last_hidden(histories).float().cpu().numpy()
    n_candidates = min(index.ntotal, k + (0 if excluded is None else excluded.shape[1]))
    distances, labels = index.search(np.ascontiguousarray(queries), n_candidates)
    ids = torch.from_numpy(labels + 1)  # [B, C] item ids
    candidate_scores = torch.from_numpy(distances)
    if excluded is not None:
        in_history = (ids[:, :, None] == excluded.cpu()[:, None, :]).any(dim=2)
        candidate_scores = candidate_scores.masked_fill(in_history, float("-inf"))
    order = torch.from_numpy(np.lexsort((ids.numpy(), -candidate_scores.numpy()), axis=1))[:, :k]
    return candidate_scores.gather(1, order), ids.gather(1, order)
