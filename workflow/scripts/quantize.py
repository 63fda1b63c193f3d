"""Stage `quantize`: train one BBQ tokenizer and write its checkpoint, codebook and per-epoch loss log.

Reads `<embeddings-dir>/{text,image}.parquet` and the behaviour embedding (`--behavior`; the streams the
tokenizer uses) and the training sequences `train.parquet`; writes `tokenizer.pt`, `codebook.parquet` and
`log.parquet` into `--out-dir`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from bbqrec.io import InputError, atomic_path, provenance, write_parquet
from bbqrec.quantize.config import BEHAVIOR
from bbqrec.quantize.sids import codebook_frame
from bbqrec.quantize.tokenizer import TOKENIZER_PRESETS, tokenizer_config
from bbqrec.quantize.train import (
    add_behavior_argument,
    embedding_paths,
    load_embeddings,
    load_sequences,
    train_tokenizer,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings-dir", required=True, type=Path, help="results/<ds>/embeddings")
    add_behavior_argument(parser)
    parser.add_argument("--train", required=True, type=Path, help="results/<ds>/data/train.parquet")
    parser.add_argument("--tokenizer", required=True, choices=sorted(TOKENIZER_PRESETS))
    parser.add_argument("--config-json", default="{}", help="the config block `quantize` as JSON (tokenizer options)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", required=True, type=Path, help="results/<ds>/quantize/<tokenizer>/seed<k>")
    parser.add_argument("--log", type=Path, help="log file (default: stderr)")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    try:
        overrides = json.loads(args.config_json)
    except json.JSONDecodeError as error:
        raise InputError(f"--config-json: not valid JSON ({error})") from error
    if not isinstance(overrides, dict):
        raise InputError(f"--config-json: expected a JSON object, got {type(overrides).__name__}")
    config = tokenizer_config(args.tokenizer, overrides)
    inputs = load_embeddings(args.embeddings_dir, config.streams, args.behavior)
    inputs.sequences = load_sequences(args.train, inputs.item_ids, config.seq_max_len)
    logging.info(
        "tokenizer %s on %d items, streams %s: %s", args.tokenizer, len(inputs.item_ids), config.streams, config
    )

    model, log_frame = train_tokenizer(inputs, config, seed=args.seed)
    behavior_files = [str(p) for p in embedding_paths(args.embeddings_dir, BEHAVIOR, args.behavior)]
    run = {**config.to_dict(), "behavior_files": behavior_files if BEHAVIOR in config.streams else []}
    meta = {"tokenizer": args.tokenizer, "provenance": provenance(run, args.seed)}
    with atomic_path(args.out_dir / "tokenizer.pt", ".pt") as tmp:
        torch.save({**model.checkpoint(), **meta}, tmp)
    write_parquet(codebook_frame(model), args.out_dir / "codebook.parquet", metadata=meta)
    write_parquet(log_frame, args.out_dir / "log.parquet", metadata=meta)
    logging.info("wrote %s", args.out_dir)


if __name__ == "__main__":
    try:
        main()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
