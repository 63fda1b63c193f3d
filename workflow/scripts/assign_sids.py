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
from bbqrec.quantize.tokenizer import BBQTokenizer
from bbqrec.quantize.train import add_behavior_argument, embedding_paths, load_embeddings


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
    checkpoint_path = args.quantize_dir / "tokenizer.pt"
    if not checkpoint_path.exists():
        raise InputError(f"{checkpoint_path}: missing tokenizer checkpoint (run the quantize stage first)")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model = BBQTokenizer.from_checkpoint(checkpoint)
    inputs = load_embeddings(args.embeddings_dir, model.config.streams, args.behavior)
    for stream, dim in inputs.input_dims.items():
        if dim != model.input_dims[stream]:
            paths = " + ".join(map(str, embedding_paths(args.embeddings_dir, stream, args.behavior)))
            raise InputError(f"{paths}: embedding dim {dim}, the tokenizer was trained on {model.input_dims[stream]}")
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
