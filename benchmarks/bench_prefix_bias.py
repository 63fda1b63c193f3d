"""Where the prefix bias should switch from the code matches to the every-pair comparison (`SPARSE_SHARE`).

    python benchmarks/bench_prefix_bias.py        # MovieLens-100K-mm, its seed-0 codes, coarsened 5 ways
    python benchmarks/bench_prefix_bias.py --data results/beauty/data --sids results/beauty/sids/bbq/seed0/semantic_ids.parquet --max-len 50

`SimilarityBias` lists the pairs of positions whose level-l prefix ids agree (`_prefix_matches`) while their
candidates are at most `SPARSE_SHARE` of the every-pair path's comparisons, and compares every pair otherwise.
Real codes give a few percent. To see the crossover, the codes are coarsened: every level's code c becomes
c mod K for K in --codes-per-level (0 = the codes as trained), so fewer distinct prefixes and more matches.
For each, one epoch's training batches (shuffled, packed as `train_epoch` packs them) go through the bias
forward and backward on both paths (the switch forced each way), on one thread, with nonzero tables. Prints the
candidate share (what the switch compares), the matches kept per allowed pair, and seconds per epoch for each
path, best of --repeats.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest import mock

import polars as pl
import torch

from bbqrec.models import similarity
from bbqrec.models.layers import allowed_pairs
from bbqrec.models.similarity import SimilarityBias
from bbqrec.training.loop import TrainingSequences, count_items, load_semantic_ids, pack_rows

REPO = Path(__file__).resolve().parents[1]
EVERY_PAIR, CODE_MATCHES = 0.0, float("inf")  # SPARSE_SHARE forcing each path


def epoch_batches(data: Path, max_len: int, batch_size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(packed inputs [R, L], allowed [R, L, L]) of one epoch, in `train_epoch`'s order and packing."""
    train = TrainingSequences.from_frame(pl.read_parquet(data / "train.parquet"), max_len)
    order = torch.randperm(len(train.inputs), generator=torch.Generator().manual_seed(seed))
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        inputs, targets = train.inputs[rows], train.targets[rows]
        width = int((inputs != 0).sum(dim=1).max())
        inputs, _, _, segments = pack_rows(inputs[:, :width], targets[:, :width])
        batches.append((inputs, allowed_pairs(inputs, segments)))
    return batches


def epoch_seconds(bias: SimilarityBias, batches, share: float, repeats: int) -> float:
    """Best of `repeats`: the bias forward and backward over the batches with SPARSE_SHARE = share."""
    best = float("inf")
    with mock.patch.object(similarity, "SPARSE_SHARE", share):
        for _ in range(repeats):
            start = time.perf_counter()
            for inputs, allowed in batches:
                values = bias(inputs, allowed)
                values.masked_fill(values == similarity.MASKED, 0).sum().backward()
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "results/movielens-mm/data")
    parser.add_argument("--sids", type=Path, default=REPO / "results/movielens-mm/sids/bbq/seed0/semantic_ids.parquet")
    parser.add_argument("--max-len", type=int, default=200, help="the dataset's train.max_len (MovieLens-100K: 200)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--codes-per-level", type=int, nargs="+", default=[0, 64, 16, 8, 4, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    _, codes, _ = load_semantic_ids(args.sids, count_items(args.data / "items.parquet"))
    batches = epoch_batches(args.data, args.max_len, args.batch_size, seed=0)
    dense = sum(SimilarityBias("prefix", 1, 1, codes).dense_comparisons(allowed) for _, allowed in batches)
    print(f"{args.data}: {len(batches)} batches, {dense:,} every-pair comparisons per epoch; one thread\n")
    columns = ["codes per level", "candidate share", "matches per pair", "every pair (s)", "code matches (s)"]
    print("| " + " | ".join([*columns, "matches / every pair"]) + " |")
    print("| --- | --- | --- | --- | --- | --- |")
    for modulus in args.codes_per_level:
        # missing codes are negative (-item_id): they stay distinct and match nothing
        coarse = codes if modulus == 0 else torch.where(codes >= 0, codes % modulus, codes)
        bias = SimilarityBias("prefix", args.layers, args.heads, coarse)
        torch.nn.init.normal_(bias.tables, std=0.1)
        candidates = sum(bias.match_candidates(inputs) for inputs, _ in batches)
        with mock.patch.object(similarity, "SPARSE_SHARE", CODE_MATCHES):
            kept = sum(len(bias._prefix_matches(inputs, allowed)[0]) for inputs, allowed in batches)
        pairs = sum(int(allowed.sum()) for _, allowed in batches)
        every_pair = epoch_seconds(bias, batches, EVERY_PAIR, args.repeats)
        matches = epoch_seconds(bias, batches, CODE_MATCHES, args.repeats)
        label = "as trained" if modulus == 0 else str(modulus)
        print(
            f"| {label} | {candidates / dense:.3f} | {kept / pairs:.2f} | {every_pair:.2f} | {matches:.2f} "
            f"| {matches / every_pair:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
