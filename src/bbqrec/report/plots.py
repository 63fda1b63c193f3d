"""SVG figures of the report: SID quality, the tokenizer's and the recommender's training curves, the comparison.

Every function takes the artifacts as read (a dict from JSON, Polars frames) and writes one SVG atomically; the
SVG is deterministic (no date, fixed ids) so an unchanged input gives an identical file. Figures are built on
`matplotlib.figure.Figure` (Agg canvas, no pyplot state), so they draw on a machine without a display.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import polars as pl  # noqa: E402
from matplotlib import rc_context  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogFormatter, MaxNLocator, PercentFormatter  # noqa: E402

from bbqrec.io import InputError, atomic_path  # noqa: E402

STYLE = {
    "svg.hashsalt": "bbqrec",
    "svg.fonttype": "path",  # text as outlines: the SVG looks the same in any browser, no font needed
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
PALETTE = matplotlib.colormaps["tab10"].colors
SEED_STYLES = ("-", "--", ":", "-.")
STREAM_COLORS = {"text": PALETTE[0], "image": PALETTE[1], "behavior": PALETTE[2]}
STREAM_NAMES = {"text": "text", "image": "image", "behavior": "behaviour"}
METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG"}

# Tokenizer log columns -> panel title; columns of one group share a panel. Unknown columns get a panel each.
TOKENIZER_PANELS = (
    ("total loss", ("total",)),
    ("reconstruction loss", ("recon", "behavior_recon")),
    ("quantizer loss (codebook + commitment)", ("quantizer",)),
    ("cross-modal alignment loss (InfoNCE)", ("align_text_image", "align_behavior_text", "align_behavior_image")),
    ("sequence contrast loss", ("seq",)),
    ("CLUB mutual-information bound", ("club",)),
    ("CLUB q fit loss (Gaussian NLL)", ("club_fit",)),
    ("level-1 codes used", ("level1_codes_used",)),
    ("dead codes re-seeded", ("dead_codes_reseeded",)),
)
TOKENIZER_LINE_NAMES = {
    "recon": "content",
    "behavior_recon": "behaviour",
    "align_text_image": "text–image",
    "align_behavior_text": "behaviour–text",
    "align_behavior_image": "behaviour–image",
}
TOKENIZER_SKIP = {"epoch", "seconds"}


class PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.06, 6), on the ticks matplotlib's LogFormatter chooses to label."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def save_svg(fig: Figure, path: str | Path) -> None:
    """Write `fig` as a deterministic SVG, atomically."""
    with atomic_path(path, ".svg") as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None}, bbox_inches="tight")


def duration(seconds: float) -> str:
    """Seconds as a short readable duration: 0.4 s, 42 s, 3.5 min, 2.1 h."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def variant_colors(variants: Sequence[str]) -> dict[str, tuple]:
    """One colour per variant, by its position in `variants` (the config order), the same in every figure."""
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(variants)}


def plot_sid_quality(quality: dict, path: str | Path, title: str = "") -> None:
    """Four panels of `sid_quality.json`: codebook usage and perplexity per level and stream, ID collisions per
    stream, and how often two streams of an item share a SID prefix."""
    streams = quality.get("streams") or {}
    if not streams:
        raise InputError(f"{title or 'sid_quality.json'}: no `streams` block to plot")
    names = [s for s in ("text", "image", "behavior") if s in streams] + sorted(set(streams) - set(STREAM_COLORS))
    size = quality.get("codebook_size")
    with rc_context(STYLE):
        fig = Figure(figsize=(11, 7.6), layout="constrained")
        (usage_ax, perplexity_ax), (collision_ax, prefix_ax) = fig.subplots(2, 2)
        width = 0.8 / len(names)
        for i, stream in enumerate(names):
            levels = streams[stream]["levels"]
            x = [lv["level"] + (i - (len(names) - 1) / 2) * width for lv in levels]
            style = {"width": width, "color": STREAM_COLORS.get(stream), "label": STREAM_NAMES.get(stream, stream)}
            bars = usage_ax.bar(x, [lv["usage"] for lv in levels], **style)
            usage_ax.bar_label(bars, labels=[str(lv["codes_used"]) for lv in levels], fontsize=7, padding=1)
            perplexity_ax.bar(x, [lv["perplexity"] for lv in levels], **style)
        level_ticks = [lv["level"] for lv in streams[names[0]]["levels"]]
        usage_ax.set(title="Codebook usage per level (bar label: codes used)", xlabel="level",
                     ylabel=f"share of the {size} codes used", ylim=(0, 1.3), xticks=level_ticks)
        usage_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        usage_ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        usage_ax.legend(loc="upper left", ncols=len(names), handlelength=1.2)
        perplexity_ax.set(title="Code perplexity per level (higher = more even use)", xlabel="level",
                          ylabel="perplexity", xticks=level_ticks)
        if size:
            perplexity_ax.axhline(size, color="0.4", linestyle="--", linewidth=1)
            perplexity_ax.text(level_ticks[0] - 0.4, size, f" codebook size {size}", va="bottom", fontsize=8,
                               color="0.35")
            perplexity_ax.set_ylim(0, size * 1.12)

        # share of items whose SID another item also has: the codes the recommender uses, the argmin codes before
        # the last level is balanced (where logged), and identical input vectors (a floor no tokenizer can beat)
        bars = [("SIDs the recommender uses", "collision_rate", "0.3"),
                ("argmin codes (before balancing)", "collision_rate_argmin", "0.55"),
                ("identical input vectors", "input_duplicate_rate", "0.8")]
        bars = [b for b in bars if any(b[1] in streams[s] for s in names)]
        width = 0.8 / len(bars)
        top = 0.01
        for j, (label, key, color) in enumerate(bars):
            x = [i + (j - (len(bars) - 1) / 2) * width for i in range(len(names))]
            values = [streams[s].get(key, math.nan) for s in names]
            top = max(top, *(v for v in values if not math.isnan(v)))
            drawn = collision_ax.bar(x, values, width=width, color=color, label=label)
            collision_ax.bar_label(drawn, labels=["" if math.isnan(v) else f"{v:.1%}" for v in values], fontsize=7,
                                   padding=1)
        collision_ax.set(title="Items sharing a SID with another item (before the extra code)",
                         xticks=range(len(names)), xticklabels=[STREAM_NAMES.get(s, s) for s in names],
                         ylabel="share of items", ylim=(0, top * 1.45))
        collision_ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
        collision_ax.legend(loc="upper left")

        pairs = quality.get("prefix_agreement") or {}
        for j, (pair, block) in enumerate(sorted(pairs.items(), key=lambda kv: (kv[0] == "all", kv[0]))):
            shares = block["share_by_prefix_length"]
            lengths = sorted(shares, key=int)
            label = "all streams" if pair == "all" else pair.replace("behavior", "behaviour").replace("-", "–")
            values = [math.nan if shares[n] is None else shares[n] for n in lengths]  # None: no common items
            prefix_ax.plot([int(n) for n in lengths], values, marker="o", label=label,
                           color="black" if pair == "all" else PALETTE[3 + j % 7],
                           linestyle="--" if pair == "all" else "-")
        prefix_ax.set(title="Items whose streams share a SID prefix", xlabel="prefix length (levels)",
                      ylabel="share of items", ylim=(0, 1.05), xticks=level_ticks)
        prefix_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        if pairs:
            prefix_ax.legend(loc="upper right")
        else:
            prefix_ax.text(0.5, 0.5, "one stream: no prefix agreement", transform=prefix_ax.transAxes, ha="center")
        codebook = quality.get("codebook", "")
        fig.suptitle(f"{title} — {quality.get('levels')} levels × {size} codes, {codebook} codebook".strip(" —"),
                     fontweight="bold")
        save_svg(fig, path)


def tokenizer_panels(columns: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(title, columns) of each panel of the tokenizer log; columns not in TOKENIZER_PANELS get one panel each."""
    present = set(columns) - TOKENIZER_SKIP
    panels = []
    for title, group in TOKENIZER_PANELS:
        cols = [c for c in group if c in present]
        if cols:
            panels.append((title, cols))
            present -= set(cols)
    return panels + [(c.replace("_", " "), [c]) for c in columns if c in present]


def plot_tokenizer_log(log: pl.DataFrame, path: str | Path, title: str = "") -> None:
    """The tokenizer's per-epoch log (quantize/<tokenizer>/log.parquet) as small multiples, one scale each."""
    if "epoch" not in log.columns:
        raise InputError(f"{title or 'tokenizer log'}: expected a table with an `epoch` column")
    if log.is_empty():  # an untrained tokenizer (epochs 0, e.g. bbq-untrained): say so instead of empty axes
        with rc_context(STYLE):
            fig = Figure(figsize=(6, 1.2), layout="constrained")
            fig.text(0.5, 0.5, "no training epochs: random encoders, k-means codebooks", ha="center", va="center")
            fig.suptitle(f"{title} — 0 epochs".strip(" —"), fontweight="bold")
            save_svg(fig, path)
        return
    numeric = [c for c in log.columns if log.schema[c].is_numeric()]
    panels = tokenizer_panels(numeric)
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    epochs = log["epoch"].to_list()
    with rc_context(STYLE):
        fig = Figure(figsize=(11, 2.6 * nrows + 0.6), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, (panel_title, cols) in zip(axes, panels):
            for i, col in enumerate(cols):
                ax.plot(epochs, log[col].to_list(), color=PALETTE[i], label=TOKENIZER_LINE_NAMES.get(col, col))
            ax.set_title(panel_title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if any(c in TOKENIZER_LINE_NAMES for c in cols):  # name the line(s) even when one pair is logged
                ax.legend(fontsize=8)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        seconds = f", {duration(log['seconds'].sum())} in all" if "seconds" in log.columns else ""
        fig.suptitle(f"{title} — {log.height} epochs{seconds}".strip(" —"), fontweight="bold")
        save_svg(fig, path)


def train_log_key(path: str | Path) -> tuple[str, int]:
    """(variant, seed) of results/<ds>/train/<variant>/seed<k>/log.parquet."""
    path = Path(path)
    match = re.fullmatch(r"seed(\d+)", path.parent.name)
    if not match:
        raise InputError(f"{path}: expected .../train/<variant>/seed<k>/log.parquet")
    return path.parent.parent.name, int(match.group(1))


def plot_training_curves(
    logs: Mapping[tuple[str, int], pl.DataFrame],
    path: str | Path,
    title: str = "",
    variants: Sequence[str] | None = None,
    metric: str = "valid_ndcg_10",
) -> None:
    """Training loss and validation `metric` per epoch, one line per (variant, seed): colour = variant, line
    style = seed; a dot marks the epoch early stopping keeps (best validation metric)."""
    if not logs:
        raise InputError(f"{title or 'training curves'}: no training logs")
    variants = list(variants or []) + sorted({v for v, _ in logs} - set(variants or []))
    colors = variant_colors(variants)
    seeds = sorted({s for _, s in logs})
    styles = {s: SEED_STYLES[i % len(SEED_STYLES)] for i, s in enumerate(seeds)}
    losses = [x for frame in logs.values() for x in frame["loss"].to_list() if x is not None and x > 0]
    log_scale = bool(losses) and max(losses) / min(losses) > 5
    metric_label = metric.replace("valid_", "validation ").replace("ndcg", "NDCG").replace("recall", "Recall")
    metric_label = re.sub(r"_(\d+)$", r"@\1", metric_label)
    with rc_context(STYLE):
        fig = Figure(figsize=(11, 4.6), layout="constrained")
        loss_ax, metric_ax = fig.subplots(1, 2)
        for (variant, seed), frame in sorted(logs.items(), key=lambda kv: (variants.index(kv[0][0]), kv[0][1])):
            style = {"color": colors[variant], "linestyle": styles[seed], "linewidth": 1.5}
            epochs = frame["epoch"].to_list()
            loss_ax.plot(epochs, frame["loss"].to_list(), **style)
            if metric in frame.columns:
                values = frame[metric].to_list()
                metric_ax.plot(epochs, values, **style)
                best = max(range(len(values)), key=lambda i: values[i])
                metric_ax.plot(epochs[best], values[best], "o", color=colors[variant], markersize=5)
        loss_ax.set(title="Training loss", xlabel="epoch",
                    ylabel="loss (log scale; CE and BCE differ in scale)" if log_scale else "loss")
        if log_scale:
            loss_ax.set_yscale("log")
            # plain numbers (6, 0.8, not 6×10⁰); minor ticks labelled only where few decades leave room
            loss_ax.yaxis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
            loss_ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        metric_ax.set(title=f"{metric_label[0].upper()}{metric_label[1:]} (dot: epoch kept by early stopping)",
                      xlabel="epoch", ylabel=metric_label)
        for ax in (loss_ax, metric_ax):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        present = [v for v in variants if any(key[0] == v for key in logs)]
        handles = [Line2D([], [], color=colors[v], linewidth=2, label=v) for v in present]
        if len(seeds) > 1:
            handles += [Line2D([], [], color="0.3", linestyle=styles[s], label=f"seed {s}") for s in seeds]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6))
        runs = f"{len(present)} variants × {len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
        fig.suptitle(f"{title} — {runs}".strip(" —"), fontweight="bold")
        save_svg(fig, path)


def plot_comparison(
    table: pl.DataFrame, path: str | Path, variants: Sequence[str] | None = None, k: int = 10
) -> None:
    """Mean ± std over seeds of test Recall@k and NDCG@k, one group of bars per dataset, one bar per variant (the
    table's test rows; results/comparison.parquet also holds the validation split's)."""
    table = table.filter((pl.col("k") == k) & (pl.col("split") == "test"))
    if table.is_empty():
        raise InputError(f"comparison table: no test rows at k={k}")
    datasets = sorted(table["dataset"].unique())
    variants = [v for v in (variants or []) if v in set(table["variant"])] + sorted(
        set(table["variant"]) - set(variants or [])
    )
    colors = variant_colors(variants)
    width = 0.8 / len(variants)
    seeds = table["seeds"].max()
    with rc_context(STYLE):
        fig = Figure(figsize=(max(8.0, 2.2 * len(datasets) + 4), 4.8), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, metric in zip(axes, ("recall", "ndcg")):
            for i, variant in enumerate(variants):
                rows = table.filter((pl.col("metric") == metric) & (pl.col("variant") == variant))
                x = [datasets.index(d) + (i - (len(variants) - 1) / 2) * width for d in rows["dataset"]]
                bars = ax.bar(x, rows["mean"].to_list(), width=width, color=colors[variant], label=variant,
                              yerr=rows["std"].to_list() if seeds > 1 else None, capsize=2,
                              error_kw={"linewidth": 0.8})
                crowded = len(variants) * len(datasets) > 8  # narrow bars: vertical value labels
                ax.bar_label(bars, fmt="%.4f", fontsize=7, padding=2, rotation=90 if crowded else 0)
            ax.set_xticks(range(len(datasets)), datasets)
            ax.set_title(f"Test {METRIC_NAMES[metric]}@{k}")
            ax.set_ylabel(f"{METRIC_NAMES[metric]}@{k}")
            ax.grid(axis="x", visible=False)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.12)  # room for the value labels
        spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
        fig.suptitle(f"Full-ranking test metrics per dataset ({spread})", fontweight="bold")
        handles = [Line2D([], [], color=colors[v], linewidth=6, label=v) for v in variants]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(variants), 8))
        save_svg(fig, path)


def plot_similarity_bias(table: pl.DataFrame, path: str | Path, title: str = "") -> None:
    """The learned attention bias of one model (`SimilarityBias.table_frame`): a panel per stream pair, the bias
    of each similarity bucket, one line per layer (colour) and head (line style)."""
    if table.is_empty():
        raise InputError(f"{title or 'similarity bias'}: empty bias table")
    pairs = table.select("query_stream", "key_stream").unique(maintain_order=True).rows()
    labels = table.select("bucket", "bucket_label").unique().sort("bucket")["bucket_label"].to_list()
    layers, heads = sorted(table["layer"].unique()), sorted(table["head"].unique())
    streams = list(dict.fromkeys(stream for pair in pairs for stream in pair))
    n_cols = len(streams) if len(pairs) == len(streams) ** 2 else min(len(pairs), 3)
    n_rows = math.ceil(len(pairs) / n_cols)
    with rc_context(STYLE):
        fig = Figure(figsize=(3.6 * n_cols + 0.6, 2.9 * n_rows + 1.0), layout="constrained")
        axes = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False).flatten()
        for ax, (query, key) in zip(axes, pairs):
            rows = table.filter((pl.col("query_stream") == query) & (pl.col("key_stream") == key))
            for layer in layers:
                for head in heads:
                    line = rows.filter((pl.col("layer") == layer) & (pl.col("head") == head)).sort("bucket")
                    ax.plot(line["bucket"].to_list(), line["bias"].to_list(), marker="o", markersize=3,
                            color=PALETTE[layer % len(PALETTE)], linestyle=SEED_STYLES[head % len(SEED_STYLES)])
            ax.axhline(0, color="0.5", linewidth=0.8)
            ax.set_title(f"{STREAM_NAMES.get(query, query)} → {STREAM_NAMES.get(key, key)}")
            ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        for ax in axes[len(pairs):]:
            ax.set_visible(False)
        for ax in axes[::n_cols]:
            ax.set_ylabel("bias on the attention logit")
        handles = [Line2D([], [], color=PALETTE[layer % len(PALETTE)], label=f"layer {layer + 1}") for layer in layers]
        handles += [Line2D([], [], color="0.3", linestyle=SEED_STYLES[head % len(SEED_STYLES)], label=f"head {head + 1}")
                    for head in heads]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
        fig.suptitle(f"{title} — attention bias by similarity (query item's stream → key item's)".strip(" —"),
                     fontweight="bold")
        save_svg(fig, path)
