#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one go, on a machine with CUDA, the project installed and results/ made:
#   bash benchmarks/gpu.sh [OUT_DIR]
# Training: MovieLens-100K-mm `sasrec`/`bbqrec` 3 epochs (sequences of 200); Beauty `sasrec`, `bbqrec` and
# `sasrec-mm` to early stopping with the real codes and text, one variant per process. Embedding: all Beauty titles
# and the first 500 MovieLens posters at three batch sizes. RecBole on the GPU: benchmarks/recbole/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/benchmarks/gpu}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python benchmarks/bench_train.py --device cuda --epochs 3 --variants sasrec bbqrec --data results/movielens-mm/data \
    --sids results/movielens-mm/sids/bbq/seed0/semantic_ids.parquet --config-json '{"max_len": 200, "content_inputs": false}' \
    --json "$out/train_ml.json" | tee "$out/train_ml.md"
for variant in sasrec bbqrec sasrec-mm; do
    python benchmarks/bench_train.py --device cuda --epochs 0 --variants "$variant" --data results/beauty/data \
        --sids results/beauty/sids/bbq/seed0/semantic_ids.parquet --text results/beauty/embeddings/text.parquet \
        --json "$out/train_beauty_$variant.json" | tee "$out/train_beauty_$variant.md"
done
python benchmarks/bench_embed.py --device cuda --texts 12101 --posters 500 \
    --grid text:64:4:0 text:256:4:0 text:1024:4:0 image:32:4:4 image:64:8:8 image:128:8:8 \
    --json "$out/embed.json" | tee "$out/embed.md"
