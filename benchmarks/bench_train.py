"""Speed and memory of the train/evaluate stages on real Beauty (22,363 users, 12,101 items).

    python benchmarks/bench_train.py                             # sasrec and bbqrec, 2 epochs each, 1 thread
    python benchmarks/bench_train.py --epochs 0 --variants sasrec  # until early stopping (long on a CPU)
    python benchmarks/bench_train.py --sids results/beauty/sids/bbq/seed0/semantic_ids.parquet --text results/beauty/embeddings/text.parquet
    python benchmarks/bench_train.py --variants sasrec --config-json '{"training_rows": "prefix", "batch_size": 2048}'

Each variant runs in a fresh process, so its peak memory (max RSS, and peak CUDA memory on a GPU) is its own.
Reports seconds per training epoch, per validation pass during training, per full test evaluation
(ranks of all 22,363 targets among all items) and per top-20 recommendation pass, epochs run, the best epoch
and the wall time of the whole fit. Without --sids, `bbqrec` gets RANDOM semantic IDs (3 streams, 3 levels of
256 codes, 32-d quantized vectors, seeded), and without --text random 384-d text vectors. The cost of the model
does not depend on the vectors' values; that of the prefix bias grows with the pairs whose codes match, which are
fewer with uniform random codes than with a tokenizer's (pass --sids for those).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def beauty_data(folder: str | None) -> Path:
    """results/beauty/data when it exists (or --data), else Beauty prepared into a temporary folder."""
    if folder:
        return Path(folder)
    if (REPO / "results" / "beauty" / "data" / "train.parquet").exists():
        return REPO / "results" / "beauty" / "data"
    from bbqrec.data import load_dataset_config, prepare_dataset

    out = Path(tempfile.mkdtemp(prefix="bench-train-")) / "data"
    prepare_dataset(load_dataset_config(REPO / "config" / "datasets" / "beauty.yaml"), DATA, out)
    return out


def random_semantic_ids(n_items: int, path: Path) -> None:
    """A semantic_ids.parquet of random codes (for timing only), in the schema of docs/artifacts.md."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    frames = [
        pl.DataFrame(
            {
                "item_id": np.arange(1, n_items + 1, dtype=np.int32),
                "stream": stream,
                **{f"c{level}": rng.integers(0, 256, n_items, dtype=np.int32) for level in (1, 2, 3)},
                "extra": np.zeros(n_items, dtype=np.int32),
                "quantized": rng.standard_normal((n_items, 32), dtype=np.float32),
            }
        )
        for stream in ("text", "image", "behavior")
    ]
    pl.concat(frames).with_columns(pl.col("quantized").cast(pl.Array(pl.Float32, 32))).write_parquet(path)


def random_text_embeddings(n_items: int, path: Path) -> None:
    """A text.parquet of random 384-d vectors (all-MiniLM-L6-v2's width; for timing only)."""
    import numpy as np
    import polars as pl

    vectors = np.random.default_rng(1).standard_normal((n_items, 384), dtype=np.float32)
    frame = pl.DataFrame({"item_id": np.arange(1, n_items + 1, dtype=np.int32), "embedding": vectors})
    frame.with_columns(pl.col("embedding").cast(pl.Array(pl.Float32, 384))).write_parquet(path)


def run_one(point: dict) -> dict:
    import polars as pl
    import torch

    from bbqrec.evaluation import EvalSet, mean_metrics, recommend, target_ranks
    from bbqrec.training import TrainConfig, TrainingSequences, build_model, count_items, fit, seed_everything

    config = TrainConfig.from_dict(point["config"])
    torch.set_num_threads(config.threads)
    data = Path(point["data"])
    n_items = count_items(data / "items.parquet")
    train = TrainingSequences.from_frame(pl.read_parquet(data / "train.parquet"), config.max_len, config.training_rows)
    valid = EvalSet.from_frame(pl.read_parquet(data / "valid.parquet"), config.max_len)
    test = EvalSet.from_frame(pl.read_parquet(data / "test.parquet"), config.max_len)
    seed_everything(0)
    model = build_model(point["variant"], config, n_items, point["sids"], point["text"])
    started, cpu_started = time.perf_counter(), time.process_time()
    result = fit(model, train, valid, config, seed=0)
    fit_seconds, fit_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    started, cpu_started = time.perf_counter(), time.process_time()
    ranks = target_ranks(model, test, config.eval_batch_size)
    test_seconds, test_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    started = time.perf_counter()
    recommend(model, test, 20, config.eval_batch_size)
    recommend_seconds = time.perf_counter() - started
    device = next(model.parameters()).device
    test_metrics = mean_metrics(ranks, (10,))
    out = {
        "variant": point["variant"],
        "device": str(device),
        "threads": config.threads,
        "epochs": result.log.height,
        "best_epoch": result.best_epoch,
        "early_stopped": result.log.height < config.max_epochs,
        "epoch_s": float(result.log["seconds"].mean()),
        "valid_s": float(result.log["valid_seconds"].mean()),
        "fit_s": fit_seconds,
        "fit_cpu_s": fit_cpu_seconds,  # process CPU time: less sensitive than wall time to a loaded machine
        "test_eval_s": test_seconds,
        "test_eval_cpu_s": test_cpu_seconds,
        "recommend_s": recommend_seconds,
        "test_recall10": test_metrics["recall@10"],
        "test_ndcg10": test_metrics["ndcg@10"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["sasrec", "bbqrec"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per variant; 0 = until early stopping")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--data", default=None, help="a prepared Beauty data folder (default: prepare one)")
    parser.add_argument("--sids", default=None, help="semantic_ids.parquet for bbqrec (default: random codes)")
    parser.add_argument("--text", default=None, help="text.parquet for sasrec-mm and bbqrec (default: random vectors)")
    parser.add_argument("--config-json", default="{}", help="further train config keys, e.g. '{\"training_rows\": \"prefix\"}'")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one variant
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return

    data = beauty_data(args.data)
    from bbqrec.training import count_items

    n_items = count_items(data / "items.parquet")
    sids = args.sids
    if sids is None and any(v.startswith("bbqrec") for v in args.variants):
        sids = str(Path(tempfile.mkdtemp(prefix="bench-sids-")) / "semantic_ids.parquet")
        random_semantic_ids(n_items, Path(sids))
    text = args.text
    if text is None and any(v.startswith(("bbqrec", "sasrec-mm")) for v in args.variants):
        text = str(Path(tempfile.mkdtemp(prefix="bench-text-")) / "text.parquet")
        random_text_embeddings(n_items, Path(text))
    config = {**json.loads(args.config_json), "threads": args.threads, "device": args.device}
    if args.epochs:
        config["max_epochs"] = args.epochs
    rows = []
    for variant in args.variants:
        point = {"variant": variant, "data": str(data), "sids": sids, "text": text, "config": config}
        child = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(point)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"done {variant}", file=sys.stderr)
    cuda = any("peak_cuda_mib" in r for r in rows)
    header = ("| variant | device | threads | epochs | best epoch | early stop | s/epoch | s/valid pass | fit s | "
              "s/test eval | s/recommend top-20 | test NDCG@10 | peak RSS MiB |")
    print(header + (" peak CUDA MiB |" if cuda else ""))
    print("|" + " --- |" * (header.count("|") - 1 + cuda))
    for r in rows:
        line = (f"| {r['variant']}{'' if args.sids or not r['variant'].startswith('bbqrec') else ' (random codes)'} | "
                f"{r['device']} | {r['threads']} | {r['epochs']} | {r['best_epoch']} | {r['early_stopped']} | "
                f"{r['epoch_s']:.1f} | {r['valid_s']:.1f} | {r['fit_s']:.0f} | {r['test_eval_s']:.1f} | "
                f"{r['recommend_s']:.1f} | {r['test_ndcg10']:.4f} | {r['peak_rss_mib']:.0f} |")
        print(line + (f" {r['peak_cuda_mib']:.0f} |" if cuda else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
