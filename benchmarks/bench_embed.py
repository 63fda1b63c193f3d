"""Throughput of embed_text and embed_image on real items: items/second, batch size, threads, peak memory.

    python benchmarks/bench_embed.py                      # 500 Beauty titles, 300 MovieLens posters, small grid
    python benchmarks/bench_embed.py --texts 2000 --grid text:64:2:0 image:32:2:1
    python benchmarks/bench_embed.py --device cuda --data-root DIR --text-model DIR --image-weights FILE.pt

--data-root holds amazon-s3rec-asin/Beauty_item_titles.tsv and movielens-100k-mm/posters/ (default ../shared/data);
--text-model is any sentence-transformers name or folder, --image-weights a timm tf_efficientnet_lite0 state dict
(defaults: the packaged offline copies), for a machine where those packages are not installed.

Each grid point `modality:batch_size:threads:workers` runs in a fresh process, so its peak memory (max RSS, and
peak CUDA memory on a GPU) is its own; the time covers the embedding call only (model loading is shown apart).
Data: the first N titled Amazon Beauty items (amazon-s3rec-asin) and the first N MovieLens-100K posters.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEFAULT_GRID = [
    "text:64:1:0",
    "text:64:2:0",
    "text:16:2:0",
    "text:256:2:0",
    "image:32:1:0",
    "image:32:2:0",
    "image:32:2:1",
    "image:8:2:1",
    "image:64:2:1",
]


def run_one(point: dict) -> dict:
    """Embed the benchmark items once with one setting; returns the measurements."""
    import polars as pl
    import torch

    from bbqrec.embed.common import ItemsFile

    torch.set_num_threads(point["threads"])
    n = point["items"]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    if point["modality"] == "text":
        from bbqrec.embed.text import TextEmbedConfig, embed_text, load_text_model

        data = Path(point["data_root"])
        titles = pl.read_csv(data / "amazon-s3rec-asin" / "Beauty_item_titles.tsv", separator="\t", quote_char=None)
        frame = titles.head(n).select(pl.col("s3rec_item_id").cast(pl.Int32).alias("item_id"), "title")
        chosen = {"model": point["text_model"]} if point["text_model"] else {}
        config = TextEmbedConfig(fields=["title"], batch_size=point["batch_size"], device=point["device"], **chosen)
        model = load_text_model(config.model, config.device)
        loaded = time.perf_counter()
        result = embed_text(ItemsFile(frame, {}, "bench"), config, model=model, progress_stream=open(os.devnull, "w"))
    else:
        from bbqrec.embed.image import ImageEmbedConfig, embed_image, load_image_model

        folder = Path(point["data_root"]) / "movielens-100k-mm" / "posters"
        posters = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem))[:n]
        frame = pl.DataFrame({"item_id": [int(p.stem) for p in posters], "image": [str(p) for p in posters]})
        frame = frame.with_columns(pl.col("item_id").cast(pl.Int32))
        chosen = {"pretrained": point["image_weights"]} if point["image_weights"] else {}
        config = ImageEmbedConfig(
            batch_size=point["batch_size"], num_workers=point["workers"], device=point["device"], **chosen
        )
        model = load_image_model(config.model, config.pretrained, config.device)
        loaded = time.perf_counter()
        result = embed_image(
            ItemsFile(frame, {}, "bench"),
            config,
            model=model,
            threads=point["threads"],
            progress_stream=open(os.devnull, "w"),
        )
    seconds = time.perf_counter() - loaded
    out = {
        **point,
        "embedded": int(sum(result.table.column(2).to_pylist())),
        "dim": result.metadata["dim"],
        "load_s": loaded - start,
        "seconds": seconds,
        "items_per_s": n / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # the machine's 1-minute load around the run: figures from a shared, busy machine are lower bounds
        "load_avg": (load_before + os.getloadavg()[0]) / 2,
    }
    if torch.cuda.is_available() and point["device"] != "cpu":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=500, help="number of Beauty titles")
    parser.add_argument("--posters", type=int, default=300, help="number of MovieLens posters")
    parser.add_argument("--grid", nargs="+", default=DEFAULT_GRID, help="modality:batch_size:threads:workers ...")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--data-root", default=str(DATA), help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--text-model", default=None, help="sentence-transformers name or folder (default: packaged)")
    parser.add_argument("--image-weights", default=None, help="timm state dict file (default: packaged weights)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one grid point
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return

    rows = []
    for spec in args.grid:
        modality, batch_size, threads, workers = spec.split(":")
        point = {
            "modality": modality,
            "batch_size": int(batch_size),
            "threads": int(threads),
            "workers": int(workers),
            "device": args.device,
            "items": args.texts if modality == "text" else args.posters,
            "data_root": args.data_root,
            "text_model": args.text_model,
            "image_weights": args.image_weights,
        }
        child = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(point)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"done {spec}", file=sys.stderr)
    print(f"{os.cpu_count()} CPUs; torch threads and DataLoader workers as listed")
    header = "| modality | items | embedded | batch | threads | workers | device | load s | embed s | items/s | peak RSS MiB | load avg |"
    print(header + (" peak CUDA MiB |" if any("peak_cuda_mib" in r for r in rows) else ""))
    print("|" + " --- |" * (header.count("|") - 1 + any("peak_cuda_mib" in r for r in rows)))
    for r in rows:
        line = (
            f"| {r['modality']} | {r['items']} | {r['embedded']} | {r['batch_size']} | {r['threads']} | "
            f"{r['workers']} | {r['device']} | {r['load_s']:.1f} | {r['seconds']:.1f} | {r['items_per_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} | {r['load_avg']:.1f} |"
        )
        print(line + (f" {r['peak_cuda_mib']:.0f} |" if "peak_cuda_mib" in r else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
