"""The comparison table: mean ± std over seeds per dataset and variant, gains over the baselines, paired tests.

Two baselines: `sasrec` (ID only) and `sasrec-mm` (the same continuous text/image inputs without codes or
reweighting); beating the first alone proves little, so every variant is tested against both. A gain and its
test use only the seeds that both rows have (an ablation run with seed 0 is compared with the baseline's seed 0,
not with its 3-seed mean). The paired test compares a variant with a baseline user by user on one split:
per-user metrics are averaged over those seeds first (so a user counts once), then a two-sided Wilcoxon
signed-rank test is run on the paired differences (zero differences dropped, as Wilcoxon's original procedure).
Pairing a 1-seed row with a 3-seed mean would not do: the differences of a 0/1 hit against a mean of three are
not symmetric about 0 even when the two models are alike, and Wilcoxon's p-value assumes they are.
The test over users takes each trained model as fixed, so it cannot see how much a rerun moves a variant (another
seed, or another CPU's float rounding, which gives `bbqrec` other codes). A second p-value (`p_seeds`) tests the
run-to-run variation instead: Welch's t-test between the variant's per-seed metrics and the baseline's, on the
seeds both have (none with fewer than 2 seeds, or with no spread on either side). It has little power with 3
seeds; a gain that passes the user test but not this one may not survive a rerun.
Every join and group that feeds a float sum keeps its input order (polars' defaults do not): the same runs then
give the same table to the last bit.

The same table per bucket of the test target's popularity (how often it occurs in the training sequences): semantic
IDs are meant to help the rare items, and the mean over all users is carried by the popular ones.
Both tables exist for the validation split too (`split` "valid": the validation targets, per-user metrics of the
same models): the split on which to look for where a variant wins or loses before a change is tried, so that the
test split is read once, afterwards.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import polars as pl
from scipy.stats import ttest_ind, wilcoxon

from bbqrec.io import InputError

BASELINE = "sasrec"
# Baselines of the table -> the suffix of their gain/p_value columns (comparison.parquet keeps `gain`, `p_value`
# for sasrec).
BASELINES = {"sasrec": "", "sasrec-mm": "_mm"}
HEADLINE = (("recall", 10), ("ndcg", 10))
METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG"}
# Buckets of a test target's count in the training sequences: 0 (never seen in training), 1-4, 5-19, >= 20.
POPULARITY_EDGES = (1, 5, 20)
SPLITS = {"test": "test", "valid": "validation"}  # split -> its name in titles


def _one_split(frame: pl.DataFrame, split: str, what: str) -> pl.DataFrame:
    if split not in SPLITS:
        raise InputError(f"split: expected one of {sorted(SPLITS)}, got {split!r}")
    if "split" not in frame.columns:
        raise InputError(f"{what}: expected a `split` column (one of {sorted(SPLITS)}), got columns {frame.columns}")
    return frame.filter(pl.col("split") == split)


def summarize(metrics: pl.DataFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    """Mean, std (sample, ddof 1; 0 for one seed) and seed count per dataset, `by`, variant, split, metric, k."""
    keys = ["dataset", *by, "variant", "split", "metric", "k"]
    return (
        metrics.group_by(keys)
        .agg(
            mean=pl.col("value").mean(),
            std=pl.col("value").std(ddof=1).fill_null(0.0),
            seeds=pl.col("seed").n_unique(),
        )
        .sort(keys)
    )


def with_baseline(frame: pl.DataFrame, baseline: str, keys: Sequence[str] = ()) -> pl.DataFrame:
    """Every row with the `baseline`'s value of the same dataset, seed, metric, k (and `keys`) as column
    `base`; seeds that the baseline lacks drop out (the baseline's own rows pair with themselves)."""
    on = ["dataset", "seed", *keys, "metric", "k"]
    base = frame.filter(pl.col("variant") == baseline).select(*on, base=pl.col("value"))
    return frame.join(base, on=on, how="inner", maintain_order="left")


def paired_p_values(user_metrics: pl.DataFrame, baseline: str = BASELINE, by: Sequence[str] = ()) -> pl.DataFrame:
    """p-value of each variant against `baseline` per dataset, `by`, metric and k, on the seeds both have (null
    where no baseline)."""
    keys = ["dataset", *by, "variant", "metric", "k"]
    paired = (
        with_baseline(user_metrics, baseline, [*by, "user_id"])
        .filter(pl.col("variant") != baseline)
        .group_by(*keys, "user_id", maintain_order=True)
        .agg(pl.col("value").mean(), pl.col("base").mean())
    )
    rows = []
    for key, group in paired.group_by(keys, maintain_order=True):
        diff = (group["value"] - group["base"]).to_numpy()
        p = 1.0 if not diff.any() else float(wilcoxon(diff, zero_method="wilcox").pvalue)
        rows.append({**dict(zip(keys, key)), "p_value": p})
    schema = {key: user_metrics.schema[key] for key in keys} | {"p_value": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def seed_p_value(values: Sequence[float], base: Sequence[float]) -> float | None:
    """Two-sided Welch t-test p-value of per-seed metrics `values` against the baseline's `base`; None where it is
    undefined (fewer than 2 seeds on a side, or both without spread)."""
    if len(values) < 2 or len(base) < 2 or (statistics.variance(values) == 0 and statistics.variance(base) == 0):
        return None
    return float(ttest_ind(values, base, equal_var=False).pvalue)


def comparison_table(
    metrics: pl.DataFrame,
    user_metrics: pl.DataFrame,
    baselines: dict[str, str] = BASELINES,
    by: Sequence[str] = (),
    split: str = "test",
) -> pl.DataFrame:
    """Summary of `split` (the rows of `metrics` and `user_metrics` with that `split`) per dataset (and `by`) and
    variant with, per baseline, the relative gain of the mean (`gain<suffix>`), the paired p-value over users
    (`p_value<suffix>`) and the p-value over seeds (`p_seeds<suffix>`), all over the seeds the row shares with the
    baseline; null where it shares none, the baseline's mean is 0, or (`p_seeds`) the test is undefined."""
    keys = ["dataset", *by, "variant", "metric", "k"]
    metrics = _one_split(metrics, split, "metrics")
    user_metrics = _one_split(user_metrics, split, "per-user metrics")
    table = summarize(metrics, by)
    for baseline, suffix in baselines.items():
        # each row's per-seed values beside the baseline's, on the seeds both have: the gain and p_seeds read them
        shared = with_baseline(metrics, baseline, by).group_by(keys, maintain_order=True).agg("value", "base")
        p_seeds = [
            None if variant == baseline else seed_p_value(values, base)
            for variant, values, base in zip(shared["variant"], shared["value"].to_list(), shared["base"].to_list())
        ]
        compared = shared.select(  # gain undefined (null) where the baseline scored 0, as on never-seen targets
            *keys,
            pl.when(pl.col("variant") == baseline)
            .then(0.0)
            .when(pl.col("base").list.mean() > 0)
            .then(pl.col("value").list.mean() / pl.col("base").list.mean() - 1.0)
            .alias(f"gain{suffix}"),
            pl.Series(f"p_seeds{suffix}", p_seeds, dtype=pl.Float64),
        )
        p_values = paired_p_values(user_metrics, baseline, by).rename({"p_value": f"p_value{suffix}"})
        table = table.join(compared, on=keys, how="left").join(
            p_values.with_columns(pl.col("k").cast(table.schema["k"])), on=keys, how="left"
        )
    return table.sort(keys)


def popularity_buckets(edges: Sequence[int] = POPULARITY_EDGES) -> list[tuple[int, str]]:
    """(lowest count, label) of each bucket that `edges` cut the training counts into: (1, 5, 20) -> counts 0,
    1-4, 5-19, >= 20. Edges must be positive and strictly increasing (config key compare.popularity_edges)."""
    edges = list(edges)
    if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise InputError(f"compare.popularity_edges: expected positive, strictly increasing counts, got {edges}")
    bounds = [0, *edges]
    labels = [str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in zip(bounds, edges)]
    return list(zip(bounds, [*labels, f">={edges[-1]}"]))


def target_popularity(
    train: pl.DataFrame, targets: pl.DataFrame, edges: Sequence[int] = POPULARITY_EDGES
) -> pl.DataFrame:
    """Each user of `targets` (test.parquet or valid.parquet: user_id, target) with its target's count in the training
    sequences (`train_count`: train.parquet's `items`, what the models were fitted on) and that count's bucket
    (`bucket`: its label, `bucket_min`: its lowest count)."""
    lows, labels = zip(*popularity_buckets(edges))
    counts = train.select(target=pl.col("items").explode()).group_by("target").agg(train_count=pl.len())
    return (
        targets.select("user_id", "target")
        .join(counts, on="target", how="left")
        .with_columns(pl.col("train_count").fill_null(0).cast(pl.Int64))
        .with_columns(bucket=pl.col("train_count").cut(list(edges), labels=labels, left_closed=True).cast(pl.String))
        .with_columns(bucket_min=pl.col("bucket").replace_strict(labels, lows, return_dtype=pl.Int64))
    )


def comparison_by_popularity(
    user_metrics: pl.DataFrame,
    popularity: pl.DataFrame,
    baselines: dict[str, str] = BASELINES,
    split: str = "test",
) -> pl.DataFrame:
    """comparison_table of `split` per dataset and bucket of that split's target's training count (`popularity`:
    dataset, user_id, bucket, bucket_min as from target_popularity on that split): a run's metric in a bucket is
    the mean over that bucket's users; `users` counts them."""
    users = _one_split(user_metrics, split, "per-user metrics").join(
        popularity.select("dataset", "user_id", "bucket_min", "bucket"),
        on=["dataset", "user_id"],
        how="inner",
        maintain_order="left",
    )
    by = ["bucket_min", "bucket"]
    metrics = (
        users.group_by("dataset", *by, "variant", "seed", "metric", "k", maintain_order=True)
        .agg(pl.col("value").mean())
        .with_columns(split=pl.lit(split))
    )
    sizes = popularity.group_by("dataset", *by).agg(users=pl.len())
    return comparison_table(metrics, users, baselines, by, split).join(sizes, on=["dataset", *by], how="left")


def _header(headline, baselines) -> list[str]:
    header = []
    for metric, k in headline:
        header.append(f"{METRIC_NAMES[metric]}@{k}")
        for baseline in baselines:
            header += [f"gain vs {baseline}", "p users", "p seeds"]
    return header


def _cells(rows: pl.DataFrame, variant: str, headline, baselines: dict[str, str]) -> list[str]:
    """`variant`'s seed count, then per headline metric its mean ± std and the gain and p against each baseline."""
    cells = [""]
    for metric, k in headline:
        row = rows.filter((pl.col("variant") == variant) & (pl.col("metric") == metric) & (pl.col("k") == k))
        if row.is_empty():
            cells += [""] * (1 + 3 * len(baselines))
            continue
        r = row.row(0, named=True)
        cells[0] = str(r["seeds"])
        cells.append(f"{r['mean']:.4f} ± {r['std']:.4f}")
        for baseline, suffix in baselines.items():
            gain = r[f"gain{suffix}"]
            cells.append("" if gain is None or variant == baseline else f"{gain:+.1%}")
            for p in (r[f"p_value{suffix}"], r[f"p_seeds{suffix}"]):
                cells.append("" if p is None or math.isnan(p) else f"{p:.2g}")
    return cells


def _ordered(variants_present, variants: Sequence[str]) -> list[str]:
    order = {v: i for i, v in enumerate(variants)}
    return sorted(variants_present, key=lambda v: order.get(v, len(order)))


def _split_name(table: pl.DataFrame) -> str:
    splits = table["split"].unique().sort().to_list()
    if len(splits) != 1 or splits[0] not in SPLITS:
        raise InputError(f"comparison table: expected the rows of one split of {sorted(SPLITS)}, got {splits}")
    return SPLITS[splits[0]]


def markdown(table: pl.DataFrame, variants: Sequence[str], headline=HEADLINE, baselines: dict[str, str] = BASELINES) -> str:
    """One Markdown table per dataset (`table`: one split's rows): mean ± std of the headline metrics, gain and
    p-value vs each baseline."""
    names = " and ".join(f"`{b}`" for b in baselines)
    lines = [
        f"# Comparison ({_split_name(table)} split, full ranking, mean ± std over seeds)",
        "",
        f"Gain vs X: relative change of the mean over baseline X ({names}), on the seeds both rows have (a 1-seed "
        "ablation against the baseline's same seed); p users: two-sided Wilcoxon signed-rank test over users of the "
        "same difference (per-user metrics averaged over those seeds; it takes the trained models as fixed); p seeds: "
        "two-sided Welch t-test over those seeds' metrics (the run-to-run variation; none for one seed).",
    ]
    header = ["variant", "seeds", *_header(headline, baselines)]
    for dataset in table["dataset"].unique(maintain_order=True).sort():
        rows = table.filter(pl.col("dataset") == dataset)
        lines += ["", f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for variant in _ordered(rows["variant"].unique(), variants):
            lines.append("| " + " | ".join([f"`{variant}`", *_cells(rows, variant, headline, baselines)]) + " |")
    return "\n".join(lines) + "\n"


def popularity_markdown(
    table: pl.DataFrame, variants: Sequence[str], headline=HEADLINE, baselines: dict[str, str] = BASELINES
) -> str:
    """comparison_by_popularity's table (one split's rows) as Markdown: per dataset, one block of rows per bucket."""
    split = _split_name(table)
    lines = [
        f"# By the {split} target's popularity (its count in the training sequences)",
        "",
        f"The {split} table again, on the users whose {split} target falls in each bucket (gains and p-values as "
        "there, within the bucket).",
    ]
    header = ["target's training count", "users", "variant", "seeds", *_header(headline, baselines)]
    for dataset in table["dataset"].unique(maintain_order=True).sort():
        rows = table.filter(pl.col("dataset") == dataset)
        lines += ["", f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for (_, bucket, users), bucket_rows in rows.group_by("bucket_min", "bucket", "users", maintain_order=True):
            for variant in _ordered(bucket_rows["variant"].unique(), variants):
                cells = _cells(bucket_rows, variant, headline, baselines)
                lines.append("| " + " | ".join([bucket, str(users), f"`{variant}`", *cells]) + " |")
    return "\n".join(lines) + "\n"
