"""Join the shard files of one embedding (text or image) into the final results/<ds>/embeddings/<name>.parquet.

Checks that the shards are 0..N-1 of one N, made with the same model and config, and (with --items) cover every
item of items.parquet exactly once. The output equals what the unsharded stage writes.
"""

import argparse
import logging
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", nargs="+", required=True, help="the shard files, in any order")
    parser.add_argument("--out", required=True, help="the joined embedding file")
    parser.add_argument("--items", default=None, help="items.parquet, to check that every item is covered")
    parser.add_argument("--log", default=None, help="also write the log (and the progress bar) to this file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from bbqrec.embed.common import ItemsFile, gather_shards, open_stage_log
    from bbqrec.io import InputError

    open_stage_log(args.log)
    try:
        result = gather_shards(args.shards, ItemsFile.read(args.items) if args.items else None)
    except InputError as err:
        logging.error("%s", err)
        return 1
    counts = result.metadata.get("counts")
    logging.info("%d shards -> %s: %d items, counts %s", len(args.shards), args.out, result.table.num_rows, counts)
    result.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
