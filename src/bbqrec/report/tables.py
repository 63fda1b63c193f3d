"""Self-contained HTML pages of the report: a dataset's statistics and the comparison table.

Each page carries its own CSS (no scripts, no external files), so `snakemake --report` can embed it as is.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import polars as pl

from bbqrec.io import InputError
from bbqrec.origins import ORIGIN_KEYS, machine_warnings, origin_groups

METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG"}
HEADLINE = (("recall", 10), ("ndcg", 10))
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; font-size: 14px;
       color: #1f2328; margin: 16px 24px; max-width: 1100px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 6px; }
p { margin: 4px 0 10px; line-height: 1.45; } .note { color: #57606a; font-size: 12.5px; }
table { border-collapse: collapse; margin: 6px 0 14px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #d0d7de; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; white-space: normal; } th.group { text-align: center; border-bottom: 1px solid #8c959f; }
td.name, th.name { text-align: left; } td.name { font-family: ui-monospace, Menlo, Consolas, monospace; }
tr.baseline td { background: #f6f8fa; }
.best { font-weight: 700; } .pos { color: #1a7f37; } .neg { color: #cf222e; } .sig { font-weight: 700; }
"""


def page(title: str, body: str) -> str:
    """A complete HTML document with the shared CSS."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def rows_html(rows: Sequence[tuple[str, str]], escape: bool = True) -> str:
    """Two-column rows: a heading cell (escaped unless `escape` is False) and an HTML value cell."""
    return "\n".join(
        f"<tr><th class=\"name\">{html.escape(k) if escape else k}</th><td>{v}</td></tr>" for k, v in rows
    )


def dataset_stats_html(stats: dict) -> str:
    """The statistics of one prepared dataset (results/<ds>/data/stats.json) as a readable page."""
    missing = {"dataset", "users", "items", "interactions"} - set(stats)
    if missing:
        raise InputError(f"stats.json: missing keys {sorted(missing)}")
    name = stats["dataset"]
    config = stats.get("provenance", {}).get("config", {})
    description = config.get("dataset", {}).get("description", "")
    seq = stats.get("sequence_length", {})
    removed = stats.get("removed", {})
    prepare = stats.get("prepare", {})
    size = [
        ("users", f"{stats['users']:,}"),
        ("items", f"{stats['items']:,}"),
        ("interactions", f"{stats['interactions']:,}"),
        ("interactions per user (mean)", f"{stats['interactions'] / max(stats['users'], 1):.2f}"),
        ("density", f"{stats.get('density', float('nan')):.3%}"),
        ("repeated (user, item) pairs", f"{stats.get('repeated_user_item_pairs', 0):,}"),
        ("items with text", f"{stats.get('share_items_with_text', float('nan')):.1%}"),
        ("items with an image", f"{stats.get('share_items_with_image', float('nan')):.1%}"),
    ]
    quantiles = [k for k in ("min", "p25", "p50", "p75", "p90", "max", "mean") if k in seq]
    seq_head = "".join(f"<th>{'median' if k == 'p50' else k}</th>" for k in quantiles)
    seq_cells = "".join(f"<td>{seq[k]:.1f}</td>" if k == "mean" else f"<td>{seq[k]:g}</td>" for k in quantiles)
    options = [(f"<code>{html.escape(k)}</code>", html.escape(str(v))) for k, v in prepare.items()]
    filters = [(k.replace("_", " "), f"{v:,}") for k, v in removed.items()]
    body = [
        f"<h1>Dataset <code>{html.escape(name)}</code></h1>",
        f"<p>{html.escape(description)}</p>" if description else "",
        f"<p class=\"note\">adapter <code>{html.escape(str(stats.get('adapter', '')))}</code>; "
        "after preparation (filters below), before the leave-one-out split.</p>",
        "<h2>Size</h2>",
        f"<table>{rows_html(size)}</table>",
        "<h2>Interactions per user (sequence length)</h2>",
        f"<table><tr>{seq_head}</tr><tr>{seq_cells}</tr></table>" if quantiles else "<p>not recorded</p>",
        "<p class=\"note\">Lengths count every kept interaction; the model sees at most the last "
        "<code>max_history_len</code> of them.</p>" if quantiles else "",
    ]
    if options:
        body += ["<h2>Preparation options</h2>", f"<table>{rows_html(options, escape=False)}</table>"]
    if filters:
        body += ["<h2>Removed by the filters</h2>", f"<table>{rows_html(filters)}</table>"]
    return page(f"Dataset {name}", "\n".join(part for part in body if part))


def baseline_columns(table: pl.DataFrame) -> dict[str, str]:
    """{baseline variant: column suffix} read off the table: for each `gain<suffix>` column, the variant whose
    gain is exactly 0 with no p-value (compared with itself). Baselines that were not run are left out."""
    baselines = {}
    for column in table.columns:
        if not column.startswith("gain"):
            continue
        suffix = column[len("gain"):]
        p_column = f"p_value{suffix}"
        if p_column not in table.columns:
            continue
        own = table.filter((pl.col(column) == 0.0) & pl.col(p_column).is_null())["variant"].unique()
        if own.len() == 1:
            baselines[own[0]] = suffix
    return baselines


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    text = f"{p:.2g}" if p >= 0.001 else "&lt;0.001"
    return f"<span class=\"sig\">{text}</span>" if p < 0.05 else text


def fmt_gain(gain) -> str:
    if gain is None or (isinstance(gain, float) and math.isnan(gain)):
        return ""
    css = "pos" if gain > 0 else "neg" if gain < 0 else ""
    return f"<span class=\"{css}\">{gain:+.1%}</span>"


def _headline_table(
    rows: pl.DataFrame, present: Sequence[str], baselines: dict[str, str], headline, lead: Sequence[str] = ()
) -> str:
    """One <table>: per variant of `present` (rows of one dataset, or of one bucket) its seeds, then per headline
    metric the mean (± std where a row has several seeds; best in bold), the gain and the p-values over users and
    over seeds against each baseline.
    `lead`: names of leading columns whose cells come with each row (`rows` must hold them)."""
    span = 1 + 3 * len(baselines)
    lead_head = "".join(f"<th rowspan=\"2\">{html.escape(name)}</th>" for name in lead)
    head1 = f"<tr>{lead_head}<th class=\"name\" rowspan=\"2\">variant</th><th rowspan=\"2\">seeds</th>" + "".join(
        f"<th class=\"group\" colspan=\"{span}\">{METRIC_NAMES.get(m, m)}@{k}</th>" for m, k in headline
    ) + "</tr>"
    several = rows["seeds"].max() > 1  # one seed: no spread to show
    sub = f"<th>{'mean ± std' if several else 'mean'}</th>" + "".join(
        f"<th>gain vs <code>{html.escape(b)}</code></th><th>p users</th><th>p seeds</th>" for b in baselines
    )
    head2 = "<tr>" + sub * len(headline) + "</tr>"
    best = {(m, k): rows.filter((pl.col("metric") == m) & (pl.col("k") == k))["mean"].max() for m, k in headline}
    lines = []
    for variant in present:
        cells, seeds = [], ""
        for m, k in headline:
            hit = rows.filter((pl.col("variant") == variant) & (pl.col("metric") == m) & (pl.col("k") == k))
            if hit.is_empty():
                cells += ["<td></td>"] * span
                continue
            r = hit.row(0, named=True)
            seeds = str(r["seeds"])
            css = " class=\"best\"" if r["mean"] == best[(m, k)] else ""
            spread = f" ± {r['std']:.4f}" if several else ""
            cells.append(f"<td{css}>{r['mean']:.4f}{spread}</td>")
            for baseline, suffix in baselines.items():
                own = variant == baseline
                cells.append(f"<td>{'' if own else fmt_gain(r[f'gain{suffix}'])}</td>")
                cells.append(f"<td>{'' if own else fmt_p(r[f'p_value{suffix}'])}</td>")
                cells.append(f"<td>{'' if own else fmt_p(r[f'p_seeds{suffix}'])}</td>")
        lead_cells = "".join(f"<td>{html.escape(str(rows[name][0]))}</td>" for name in lead)
        css = " class=\"baseline\"" if variant in baselines else ""
        lines.append(f"<tr{css}>{lead_cells}<td class=\"name\">{html.escape(variant)}</td><td>{seeds}</td>"
                     + "".join(cells) + "</tr>")
    return f"<table>{head1}{head2}{''.join(lines)}</table>"


def comparison_html(
    table: pl.DataFrame,
    variants: Sequence[str] = (),
    headline=HEADLINE,
    by_popularity: pl.DataFrame | None = None,
    origins: pl.DataFrame | None = None,
) -> str:
    """results/comparison.parquet as one table per dataset: mean ± std of the headline metrics (best in bold),
    the gain over each baseline that was run (green/red) and its p-values over users and over seeds (bold below
    0.05), then every cutoff's mean; with `by_popularity` (results/comparison_by_popularity.parquet) the first
    table again per bucket of the test target's training count. Both tables' validation rows are left out. With
    `origins` (results/comparison_origins.parquet) the page ends with where the runs were trained."""
    needed = {"dataset", "variant", "split", "metric", "k", "mean", "std", "seeds"}
    if not needed <= set(table.columns):
        raise InputError(f"comparison table: missing columns {sorted(needed - set(table.columns))}")
    if by_popularity is not None and not needed | {"bucket_min", "bucket", "users"} <= set(by_popularity.columns):
        raise InputError("comparison by popularity: expected the columns of results/comparison_by_popularity.parquet")
    if origins is not None and not {"dataset", *ORIGIN_KEYS} <= set(origins.columns):
        raise InputError("comparison origins: expected the columns of results/comparison_origins.parquet")
    table = table.filter(pl.col("split") == "test")
    by_popularity = by_popularity.filter(pl.col("split") == "test") if by_popularity is not None else None
    baselines = baseline_columns(table)
    order = {v: i for i, v in enumerate(variants)}
    ks = sorted(table["k"].unique())
    names = " and ".join(f"<code>{html.escape(b)}</code>" for b in baselines)
    body = [
        "<h1>Comparison on the test split</h1>",
        "<p>Full ranking over all items, leave-one-out (each user's last item). Cells: mean (± std) over seeds; "
        "<b>bold</b>: best variant of the dataset.",
        f" Gain: relative change of the mean over the baseline ({names}), "
        "<span class=\"pos\">green</span> above, <span class=\"neg\">red</span> below; p users: two-sided Wilcoxon "
        "signed-rank test over users (per-user metrics averaged over seeds; it takes the trained models as fixed); "
        "p seeds: two-sided Welch t-test over the seeds' metrics (the run-to-run variation); <b>bold</b> below 0.05."
        if baselines else "",
        "</p>",
    ]
    for dataset in sorted(table["dataset"].unique()):
        rows = table.filter(pl.col("dataset") == dataset)
        present = sorted(rows["variant"].unique(), key=lambda v: (order.get(v, len(order)), v))
        cutoff_head = "<tr><th class=\"name\">variant</th>" + "".join(
            f"<th>{METRIC_NAMES.get(m, m)}@{k}</th>" for m in ("recall", "ndcg") for k in ks
        ) + "</tr>"
        cutoff_rows = []
        for variant in present:
            cells = []
            for m in ("recall", "ndcg"):
                for k in ks:
                    hit = rows.filter((pl.col("variant") == variant) & (pl.col("metric") == m) & (pl.col("k") == k))
                    cells.append(f"<td>{hit['mean'][0]:.4f}</td>" if hit.height else "<td></td>")
            cutoff_rows.append(f"<tr><td class=\"name\">{html.escape(variant)}</td>{''.join(cells)}</tr>")
        body += [
            f"<h2>{html.escape(dataset)}</h2>",
            _headline_table(rows, present, baselines, headline),
            "<p class=\"note\">Every cutoff (mean over seeds):</p>",
            f"<table>{cutoff_head}{''.join(cutoff_rows)}</table>",
        ]
        if by_popularity is None:
            continue
        buckets = by_popularity.filter(pl.col("dataset") == dataset).sort("bucket_min")
        body.append("<p class=\"note\">By the test target's count in the training sequences (bold: best of the "
                    "bucket; gain and p within the bucket):</p>")
        for _, bucket_rows in buckets.group_by("bucket_min", maintain_order=True):
            body.append(_headline_table(bucket_rows, present, baselines, headline, lead=("bucket", "users")))
    if origins is not None:
        body.append(_origins_section(origins))
    return page("Comparison", "\n".join(part for part in body if part))


def _origins_section(origins: pl.DataFrame) -> str:
    """Where the runs were trained: one row per CPU, instruction set, threads and commit (bbqrec.origins), and a
    warning for each dataset trained on more than one CPU or instruction set."""
    groups = origin_groups(origins)
    names = (html.escape(column.replace("_", " ")) for column in groups.columns)
    head = "<tr>" + "".join(f"<th class=\"name\">{name}</th>" for name in names) + "</tr>"
    rows = "".join(
        "<tr>" + "".join(f"<td class=\"name\">{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in groups.iter_rows()
    )
    warnings = "".join(
        f"<p class=\"neg\">{html.escape(warning[0].upper() + warning[1:])}.</p>"
        for warning in machine_warnings(origins)
    )
    return (
        "<h2>Where the runs were trained</h2><p class=\"note\">The same seed gives other floats, and so other "
        "metrics, on another CPU instruction set or thread count (each run's provenance).</p>"
        f"<table>{head}{rows}</table>{warnings}"
    )
