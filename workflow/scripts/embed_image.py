"""Stage embed_image: one image embedding per item of items.parquet (or of one shard of them).

Images come from the items' `image` column (local path, relative to --data-root, or URL fetched once into
--cache-dir) encoded by a timm model, or from the dataset's shipped feature matrix. Missing, unfetchable or
corrupt images are counted in the log and marked missing. Writes item_id, embedding fixed_size_list<f32>[D]
(null without image), has_image; metadata model, dim, provenance. With --num-shards the output is shard
--shard of N (gather_embeddings.py joins them).
"""

import argparse
import json
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from installed packages or local paths, never a hub


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", required=True, help="results/<ds>/data/items.parquet")
    parser.add_argument("--out", required=True, help="image.parquet, or the shard file with --num-shards")
    parser.add_argument("--shard", type=int, default=0, help="which shard to embed (0-based)")
    parser.add_argument("--num-shards", type=int, default=None, help="number of shards; omit for the whole file")
    parser.add_argument("--config-json", default="{}", help="the embed.image config block as JSON")
    parser.add_argument("--data-root", default=None, help="folder that relative image and feature paths start from")
    parser.add_argument("--cache-dir", default="resources/image_cache", help="downloaded images, one per URL hash")
    parser.add_argument("--log", default=None, help="also write the log (and the progress bar) to this file")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads: torch, and threads-1 decoding workers")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from bbqrec.embed.common import ItemsFile, open_stage_log, with_shard
    from bbqrec.embed.image import ImageEmbedConfig, embed_image
    from bbqrec.io import InputError

    stream = open_stage_log(args.log)
    torch.set_num_threads(args.threads)
    try:
        config = ImageEmbedConfig.from_dict(json.loads(args.config_json))
        result = embed_image(
            ItemsFile.read(args.items),
            config,
            shard=args.shard,
            num_shards=args.num_shards or 1,
            data_root=args.data_root,
            cache_dir=args.cache_dir,
            threads=args.threads,
            progress_stream=stream,
        )
    except InputError as err:
        logging.error("%s", err)
        return 1
    if args.num_shards is not None:
        result = with_shard(result, args.shard, args.num_shards)
    result.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
