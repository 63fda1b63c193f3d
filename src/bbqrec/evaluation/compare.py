"""The comparison table: mean ± std over seeds per dataset and variant, gain over the baseline, paired test.

The paired test compares each variant with the baseline user by user on the test split: per-user metrics are
averaged over seeds first (so a user counts once), then a two-sided Wilcoxon signed-rank test is run on the
paired differences (zero differences dropped, as Wilcoxon's original procedure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl
from scipy.stats import wilcoxon

BASELINE = "sasrec"
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


def paired_p_values(user_metrics: pl.DataFrame, baseline: str = BASELINE) -> pl.DataFrame:
    """p-value of each variant against `baseline` per dataset, metric and k (null where no baseline)."""
    per_user = user_metrics.group_by("dataset", "variant", "user_id", "metric", "k").agg(pl.col("value").mean())
    base = per_user.filter(pl.col("variant") == baseline).drop("variant").rename({"value": "base"})
    paired = per_user.filter(pl.col("variant") != baseline).join(
        base, on=["dataset", "user_id", "metric", "k"], how="inner"
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
    metrics: pl.DataFrame, user_metrics: pl.DataFrame, baseline: str = BASELINE
) -> pl.DataFrame:
    """Test-split summary with the relative gain of the mean over `baseline` and the paired p-value."""
    summary = summarize(metrics.filter(pl.col("split") == "test"))
    base = summary.filter(pl.col("variant") == baseline).select(
        "dataset", "metric", "k", base_mean=pl.col("mean")
    )
    table = summary.join(base, on=["dataset", "metric", "k"], how="left").with_columns(
        gain=pl.col("mean") / pl.col("base_mean") - 1.0
    )
    table = table.join(
        paired_p_values(user_metrics, baseline).with_columns(pl.col("k").cast(table.schema["k"])),
        on=["dataset", "variant", "metric", "k"],
        how="left",
    )
    return table.drop("base_mean").sort("dataset", "variant", "metric", "k")


def markdown(table: pl.DataFrame, variants: Sequence[str], headline=HEADLINE, baseline: str = BASELINE) -> str:
    """One Markdown table per dataset: mean ± std of the headline metrics, gain and p-value vs the baseline."""
    lines = [
        "# Comparison (test split, full ranking, mean ± std over seeds)",
        "",
        f"Gain: relative change of the mean over `{baseline}`; p: two-sided Wilcoxon signed-rank test over users "
        "(per-user metrics averaged over seeds).",
    ]
    order = {v: i for i, v in enumerate(variants)}
    for dataset in table["dataset"].unique(maintain_order=True).sort():
        rows = table.filter(pl.col("dataset") == dataset)
        header = ["variant", "seeds"]
        for metric, k in headline:
            header += [f"{METRIC_NAMES[metric]}@{k}", "gain", "p"]
        lines += ["", f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for variant in sorted(rows["variant"].unique(), key=lambda v: order.get(v, len(order))):
            cells = [f"`{variant}`"]
            for metric, k in headline:
                row = rows.filter((pl.col("variant") == variant) & (pl.col("metric") == metric) & (pl.col("k") == k))
                if row.is_empty():
                    cells += ["", "", ""] if len(cells) > 1 else ["", "", "", ""]
                    continue
                r = row.row(0, named=True)
                if len(cells) == 1:
                    cells.append(str(r["seeds"]))
                cells.append(f"{r['mean']:.4f} ± {r['std']:.4f}")
                cells.append("" if r["gain"] is None or variant == baseline else f"{r['gain']:+.1%}")
                p = r["p_value"]
                cells.append("" if p is None or math.isnan(p) else f"{p:.2g}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
