"""The comparison table: mean ± std over seeds per dataset and variant, gains over the baselines, paired tests.

Two baselines: `sasrec` (ID only) and `sasrec-mm` (the same continuous text/image inputs without codes or
reweighting); beating the first alone proves little, so every variant is tested against both. A gain and its
test use only the seeds that both rows have (an ablation run with seed 0 is compared with the baseline's seed 0,
not with its 3-seed mean). The paired test compares a variant with a baseline user by user on the test split:
per-user metrics are averaged over those seeds first (so a user counts once), then a two-sided Wilcoxon
signed-rank test is run on the paired differences (zero differences dropped, as Wilcoxon's original procedure).
Pairing a 1-seed row with a 3-seed mean would not do: the differences of a 0/1 hit against a mean of three are
not symmetric about 0 even when the two models are alike, and Wilcoxon's p-value assumes they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl
from scipy.stats import wilcoxon

BASELINE = "sasrec"
# Baselines of the table -> the suffix of their gain/p_value columns (comparison.parquet keeps `gain`, `p_value`
# for sasrec).
BASELINES = {"sasrec": "", "sasrec-mm": "_mm"}
HEADLINE = (("recall", 10), ("ndcg", 10))
METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG"}


def summarize(metrics: pl.DataFrame) -> pl.DataFrame:
    """Mean, std (sample, ddof 1; 0 for one seed) and seed count per dataset, variant, split, metric, k."""
    return (
        metrics.group_by("dataset", "variant", "split", "metric", "k")
        .agg(
            mean=pl.col("value").mean(),
            std=pl.col("value").std(ddof=1).fill_null(0.0),
            seeds=pl.col("seed").n_unique(),
        )
        .sort("dataset", "variant", "split", "metric", "k")
    )


def with_baseline(frame: pl.DataFrame, baseline: str, keys: Sequence[str] = ()) -> pl.DataFrame:
    """Every row with the `baseline`'s value of the same dataset, seed, metric, k (and `keys`) as column
    `base`; seeds that the baseline lacks drop out (the baseline's own rows pair with themselves)."""
    on = ["dataset", "seed", *keys, "metric", "k"]
    base = frame.filter(pl.col("variant") == baseline).select(*on, base=pl.col("value"))
    return frame.join(base, on=on, how="inner")


def paired_p_values(user_metrics: pl.DataFrame, baseline: str = BASELINE) -> pl.DataFrame:
    """p-value of each variant against `baseline` per dataset, metric and k, on the seeds both have (null where
    no baseline)."""
    paired = (
        with_baseline(user_metrics, baseline, ["user_id"])
        .filter(pl.col("variant") != baseline)
        .group_by("dataset", "variant", "user_id", "metric", "k")
        .agg(pl.col("value").mean(), pl.col("base").mean())
    )
    rows = []
    for (dataset, variant, metric, k), group in paired.group_by(
        "dataset", "variant", "metric", "k", maintain_order=True
    ):
        diff = (group["value"] - group["base"]).to_numpy()
        p = 1.0 if not diff.any() else float(wilcoxon(diff, zero_method="wilcox").pvalue)
        rows.append({"dataset": dataset, "variant": variant, "metric": metric, "k": k, "p_value": p})
    schema = {"dataset": pl.String, "variant": pl.String, "metric": pl.String, "k": pl.Int64, "p_value": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def comparison_table(
    metrics: pl.DataFrame, user_metrics: pl.DataFrame, baselines: dict[str, str] = BASELINES
) -> pl.DataFrame:
    """Test-split summary with, per baseline, the relative gain of the mean (`gain<suffix>`) and the paired
    p-value (`p_value<suffix>`), both over the seeds the row shares with the baseline; null where it shares none."""
    test = metrics.filter(pl.col("split") == "test")
    table = summarize(test)
    for baseline, suffix in baselines.items():
        gains = (
            with_baseline(test, baseline)
            .group_by("dataset", "variant", "metric", "k")
            .agg((pl.col("value").mean() / pl.col("base").mean() - 1.0).alias(f"gain{suffix}"))
        )
        p_values = paired_p_values(user_metrics, baseline).rename({"p_value": f"p_value{suffix}"})
        table = (
            table.join(gains, on=["dataset", "variant", "metric", "k"], how="left")
            .join(
                p_values.with_columns(pl.col("k").cast(table.schema["k"])),
                on=["dataset", "variant", "metric", "k"],
                how="left",
            )
        )
    return table.sort("dataset", "variant", "metric", "k")


def markdown(table: pl.DataFrame, variants: Sequence[str], headline=HEADLINE, baselines: dict[str, str] = BASELINES) -> str:
    """One Markdown table per dataset: mean ± std of the headline metrics, gain and p-value vs each baseline."""
    names = " and ".join(f"`{b}`" for b in baselines)
    lines = [
        "# Comparison (test split, full ranking, mean ± std over seeds)",
        "",
        f"Gain vs X: relative change of the mean over baseline X ({names}), on the seeds both rows have (a 1-seed "
        "ablation against the baseline's same seed); p: two-sided Wilcoxon signed-rank test over users of the same "
        "difference (per-user metrics averaged over those seeds).",
    ]
    order = {v: i for i, v in enumerate(variants)}
    for dataset in table["dataset"].unique(maintain_order=True).sort():
        rows = table.filter(pl.col("dataset") == dataset)
        header = ["variant", "seeds"]
        for metric, k in headline:
            header.append(f"{METRIC_NAMES[metric]}@{k}")
            for baseline in baselines:
                header += [f"gain vs {baseline}", "p"]
        lines += ["", f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for variant in sorted(rows["variant"].unique(), key=lambda v: order.get(v, len(order))):
            cells = [f"`{variant}`", ""]
            for metric, k in headline:
                row = rows.filter((pl.col("variant") == variant) & (pl.col("metric") == metric) & (pl.col("k") == k))
                if row.is_empty():
                    cells += [""] * (1 + 2 * len(baselines))
                    continue
                r = row.row(0, named=True)
                cells[1] = str(r["seeds"])
                cells.append(f"{r['mean']:.4f} ± {r['std']:.4f}")
                for baseline, suffix in baselines.items():
                    gain, p = r[f"gain{suffix}"], r[f"p_value{suffix}"]
                    cells.append("" if gain is None or variant == baseline else f"{gain:+.1%}")
                    cells.append("" if p is None or math.isnan(p) else f"{p:.2g}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
