"""Stage `assign_sids`: semantic IDs of every item and stream from a trained tokenizer, and their quality.

Writes `semantic_ids.parquet` (item_id, stream, c1..cL, extra, last_argmin, quantized) and `sid_quality.json`
into `--out-dir`. Items missing a modality get no row for that stream. With the tokenizer option
`balance_last_level` (default), cL is the balanced last code; the report gives collision rates before it
(`*_argmin`) and after it, both before `extra`, and each stream's `input_duplicate_rate` (the argmin floor).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from bbqrec.io import InputError, provenance, write_json, write_parquet
from bbqrec.quantize.sids import assign_extra, encode_items, input_duplicate_rates, sid_quality
from bbqrec.quantize.train import add_behavior_argument, load_trained_tokenizer


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quantize-dir", required=True, type=Path, help="results/<ds>/quantize/<tokenizer>/seed<k>")
    parser.add_argument("--embeddings-dir", required=True, type=Path, help="results/<ds>/embeddings")
    add_behavior_argument(parser)
    parser.add_argument("--out-dir", required=True, type=Path, help="results/<ds>/sids/<tokenizer>/seed<k>")
    parser.add_argument("--log", type=Path, help="log file (default: stderr)")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    checkpoint, model, inputs = load_trained_tokenizer(args.quantize_dir, args.embeddings_dir, args.behavior)
    semantic_ids = assign_extra(encode_items(model, inputs))
    quality = sid_quality(semantic_ids, model.config.codebook_size)
    quality["tokenizer"] = checkpoint["tokenizer"]
    quality["codebook"] = model.config.codebook
    quality["balance_last_level"] = model.config.balance_last_level
    for stream, rate in input_duplicate_rates(inputs).items():
        quality["streams"][stream]["input_duplicate_rate"] = rate
    meta = {
        "tokenizer": checkpoint["tokenizer"],
        "provenance": provenance(
            {**model.config.to_dict(), "behavior_files": checkpoint["provenance"]["config"].get("behavior_files", [])},
            checkpoint["provenance"]["seed"],
        ),
    }
    write_parquet(semantic_ids, args.out_dir / "semantic_ids.parquet", metadata=meta)
    write_json(quality, args.out_dir / "sid_quality.json")
    for stream, q in quality["streams"].items():
        logging.info(
            "%s: level-1 usage %.3f, collision rate %.4f (argmin codes %.4f, identical inputs %.4f)",
            stream,
            q["levels"][0]["usage"],
            q["collision_rate"],
            q["collision_rate_argmin"],
            q["input_duplicate_rate"],
        )


if __name__ == "__main__":
    try:
        main()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
