"""Benchmark: tokenizer training time and peak memory, plus SID assignment and quality, on real stage outputs.

Inputs are the artifacts of the upstream stages (docs/artifacts.md): `--embeddings-dir` with text.parquet
and/or image.parquet, `--behavior` (default: the seed's behaviour embedding, <embeddings-dir>/behavior/seed<k>.parquet)
and `--train` (train.parquet). The content streams are those whose file exists. Without a behaviour embedding,
`--substitute-behavior` stands in an item2vec-style SVD of the training
co-occurrences (the tests' stand-in, not the SASRec embedding of the behavior_embed stage): say so when quoting.

    python benchmarks/bench_quantize.py --embeddings-dir results/beauty/embeddings \
        --train results/beauty/data/train.parquet --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

import polars as pl
import torch

from bbqrec.quantize.sids import assign_extra, encode_items, input_duplicate_rates, sid_quality
from bbqrec.quantize.tokenizer import TOKENIZER_PRESETS, tokenizer_config
from bbqrec.quantize.train import load_embeddings, load_sequences, train_tokenizer


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def substitute_behavior(train: Path, item_ids, dim: int, seed: int) -> torch.Tensor:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_sids import cooccurrence_behavior  # the tests' stand-in, one copy

    return torch.from_numpy(cooccurrence_behavior(pl.read_parquet(train), len(item_ids), dim, seed))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings-dir", required=True, type=Path)
    parser.add_argument("--train", required=True, type=Path)
    parser.add_argument("--tokenizer", default="bbq", choices=sorted(TOKENIZER_PRESETS))
    parser.add_argument("--config-json", default="{}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--behavior", type=Path, help="default: <embeddings-dir>/behavior/seed<seed>.parquet")
    parser.add_argument(
        "--substitute-behavior",
        type=int,
        metavar="DIM",
        default=0,
        help="without a behaviour embedding: use a co-occurrence SVD stand-in of this dim",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)

    overrides = json.loads(args.config_json)
    overrides.setdefault(
        "modalities", [m for m in ("text", "image") if (args.embeddings_dir / f"{m}.parquet").exists()]
    )
    behavior = args.behavior or args.embeddings_dir / "behavior" / f"seed{args.seed}.parquet"
    config = tokenizer_config(args.tokenizer, overrides)
    substitute = config.use_behavior and not behavior.exists()
    if substitute and not args.substitute_behavior:
        parser.error(f"{behavior} missing: pass --behavior PATH or --substitute-behavior DIM")
    inputs = load_embeddings(
        args.embeddings_dir, tuple(s for s in config.streams if not (substitute and s == "behavior")), behavior
    )
    behavior_source = str(behavior) if config.use_behavior else None
    if substitute:
        inputs.features["behavior"] = substitute_behavior(
            args.train, inputs.item_ids, args.substitute_behavior, args.seed
        )
        inputs.present["behavior"] = torch.ones(len(inputs.item_ids), dtype=torch.bool)
        behavior_source = f"co-occurrence SVD stand-in (dim {args.substitute_behavior})"
    inputs.sequences = load_sequences(args.train, inputs.item_ids, config.seq_max_len)

    rss_before = peak_rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    model, log = train_tokenizer(inputs, config, seed=args.seed)
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall = time.perf_counter()
    sids = assign_extra(encode_items(model, inputs))
    assign_wall = time.perf_counter() - wall
    quality = sid_quality(sids, config.codebook_size)
    report = {
        "items": len(inputs.item_ids),
        "sequences": len(inputs.sequences),
        "streams": list(config.streams),
        "behavior_input": behavior_source,
        "threads": args.threads,
        "config": config.to_dict(),
        "train_seconds": round(train_wall, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "seconds_per_epoch": round(train_wall / config.epochs, 2),
        "assign_seconds": round(assign_wall, 2),
        "peak_rss_mib_before_training": round(rss_before),
        "peak_rss_mib": round(peak_rss_mib()),
        "level1_usage": {s: q["levels"][0]["usage"] for s, q in quality["streams"].items()},
        "collision_rate": {s: q["collision_rate"] for s, q in quality["streams"].items()},
        "collision_rate_argmin": {s: q["collision_rate_argmin"] for s, q in quality["streams"].items()},
        "input_duplicate_rate": input_duplicate_rates(inputs),
        "first_last_epoch_losses": {
            c: [round(log[c][0], 4), round(log[c][-1], 4)] for c in log.columns if c not in ("epoch", "seconds")
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
