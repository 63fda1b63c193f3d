"""Benchmark of prepare_data on S3-Rec Sports (296,337 interactions): wall time and peak memory.

Target: < 20 s and < 1 GiB. Run: `python benchmarks/bench_prepare_data.py [--dataset sports] [--repeat 3]`.
Peak RSS is the whole process (interpreter + Polars + the data), read from getrusage after the runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sports", help="config/datasets/<name>.yaml")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    from bbqrec.data import load_dataset_config, prepare_dataset

    import_s = time.perf_counter() - start
    cfg = load_dataset_config(REPO_ROOT / "config" / "datasets" / f"{args.dataset}.yaml")
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            start = time.perf_counter()
            stats = prepare_dataset(cfg, args.data_root, Path(tmp) / f"run{i}")
            walls.append(time.perf_counter() - start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(affinity {len(os.sched_getaffinity(0))}), Python {platform.python_version()}"
    )
    print(
        f"dataset: {args.dataset}: {stats['users']:,} users, {stats['items']:,} items, "
        f"{stats['interactions']:,} interactions"
    )
    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(f"| import bbqrec.data | {import_s:.2f} s | |")
    print(f"| prepare_dataset wall, median of {args.repeat} | {statistics.median(walls):.2f} s | < 20 s |")
    print(f"| prepare_dataset wall, min / max | {min(walls):.2f} / {max(walls):.2f} s | |")
    print(f"| peak RSS (whole process) | {peak_mib:.0f} MiB | < 1024 MiB |")


if __name__ == "__main__":
    main()
