"""Stage export_similarity_bias: the attention bias one trained model learned over item-pair similarity
(BBQRec's reweighting) as a table: query_stream, key_stream, layer, head, bucket, bucket_label, bias.

The stream names come from the semantic IDs the model was trained on; their codes must be the model's own
(a one-stage model trained its codes on from them, and names its streams itself).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="results/<ds>/train/<variant>/seed<k>/model.pt")
    parser.add_argument("--sids", type=Path, required=True, help="the semantic_ids.parquet the model was trained on")
    parser.add_argument("--out", type=Path, required=True, help="the bias table (Parquet)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import torch

    from bbqrec.io import InputError, provenance, write_parquet
    from bbqrec.models import SASRec
    from bbqrec.training import load_semantic_ids

    saved = torch.load(args.model, map_location="cpu", weights_only=True)
    model = SASRec.from_checkpoint(saved)
    if model.similarity is None:
        raise InputError(f"{args.model}: variant {saved.get('variant')!r} has no similarity bias to export")
    if model.joint is not None:  # one-stage training: the model's codes are its own, trained on from --sids's
        streams = model.joint.streams
    else:
        streams, codes, _ = load_semantic_ids(args.sids, model.config.n_items)
        if codes.shape != model.similarity.item_codes.shape or not torch.equal(codes, model.similarity.item_codes):
            raise InputError(f"{args.sids}: not the semantic IDs {args.model} was trained on (the codes differ)")
    table = model.similarity.table_frame(streams)
    write_parquet(table, args.out, {"provenance": provenance({"model": str(args.model), "sids": str(args.sids)})})
    logging.info("%s: %d entries of the %s bias -> %s", args.model, table.height, model.similarity.kind, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
