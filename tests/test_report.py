"""The report's figures and HTML pages (bbqrec.report) on artifacts shaped like the real ones, and the report
rules in the planned DAG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest

from bbqrec.io import InputError
from bbqrec.report.plots import (
    plot_comparison,
    plot_sid_quality,
    plot_tokenizer_log,
    tokenizer_panels,
    train_log_key,
)
from bbqrec.report.tables import baseline_columns, comparison_html, dataset_stats_html, fmt_p

REPO = Path(__file__).resolve().parents[1]
REPORT_RULES = ("report_dataset_stats", "plot_sid_quality", "plot_tokenizer_log", "plot_training_curves",
                "plot_similarity_bias", "report_comparison")


def run_script(name: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "workflow" / "scripts" / name), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert result.returncode == 0, result.stderr


def assert_svg(path: Path) -> None:
    assert ET.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert path.stat().st_size > 10_000  # axes, lines and text outlines, not an empty canvas


def train_log(epochs: int, start: float, slope: float) -> pl.DataFrame:
    """A log with the columns of results/<ds>/train/<variant>/seed<k>/log.parquet (bbqrec.training)."""
    ndcg = [0.02 + 0.01 * min(e, 4) - 0.002 * max(e - 4, 0) for e in range(1, epochs + 1)]
    frame = {"epoch": list(range(1, epochs + 1)), "loss": [start - slope * e for e in range(epochs)]}
    for k in (5, 10, 20):
        frame |= {f"valid_recall_{k}": [2 * x for x in ndcg], f"valid_ndcg_{k}": ndcg}
    return pl.DataFrame(frame | {"seconds": [1.0] * epochs, "valid_seconds": [0.5] * epochs, "lr": [1e-3] * epochs})


def test_training_curves_script_draws_every_variant_and_seed_deterministically(tmp_path):
    logs = []
    for variant, start in (("sasrec", 7.4), ("sasrec-bce", 1.4), ("bbqrec", 6.6)):  # CE and BCE: log-scale loss
        for seed in (0, 1):
            path = tmp_path / "train" / variant / f"seed{seed}" / "log.parquet"
            path.parent.mkdir(parents=True)
            train_log(6 + seed, start, 0.1).write_parquet(path)
            logs.append(str(path))
    assert train_log_key(logs[-1]) == ("bbqrec", 1)
    out = tmp_path / "curves.svg"
    args = ("--logs", *logs, "--variants", "sasrec", "sasrec-bce", "bbqrec", "--title", "d", "--out")
    run_script("plot_training_curves.py", *args, str(out))
    assert_svg(out)
    first = out.read_bytes()
    run_script("plot_training_curves.py", *args, str(out))
    assert out.read_bytes() == first  # no date or random ids: an unchanged input gives an identical file


def test_similarity_bias_script_draws_every_stream_pair_deterministically(tmp_path):
    import torch

    from bbqrec.models.similarity import SimilarityBias

    codes = torch.randint(0, 4, (30, 3, 3), generator=torch.Generator().manual_seed(0))  # 3 streams, 3 levels
    bias = SimilarityBias("prefix", n_layers=2, n_heads=2, item_codes=codes)
    torch.nn.init.normal_(bias.tables, generator=torch.Generator().manual_seed(1))
    table = tmp_path / "similarity_bias.parquet"
    bias.table_frame(["text", "image", "behavior"]).write_parquet(table)
    out = tmp_path / "bias.svg"
    run_script("plot_similarity_bias.py", "--table", str(table), "--title", "d, bbqrec, seed 0", "--out", str(out))
    assert_svg(out)
    first = out.read_bytes()
    assert first.count(b'id="axes_') == 9  # a panel per (query, key) stream pair
    run_script("plot_similarity_bias.py", "--table", str(table), "--title", "d, bbqrec, seed 0", "--out", str(out))
    assert out.read_bytes() == first


def test_tokenizer_log_panels_group_known_columns_and_keep_new_ones(tmp_path):
    # the columns of results/<ds>/quantize/<tokenizer>/log.parquet, plus one the figure does not know yet
    columns = ["epoch", "align_behavior_image", "align_behavior_text", "align_text_image", "behavior_recon", "club",
               "club_fit", "quantizer", "recon", "seq", "total", "level1_codes_used", "dead_codes_reseeded",
               "seconds", "new_term"]
    log = pl.DataFrame({c: [float(10 - e) for e in range(4)] for c in columns}).with_columns(
        pl.col("epoch").cast(pl.Int32)
    )
    panels = dict(tokenizer_panels(log.columns))
    assert panels["reconstruction loss"] == ["recon", "behavior_recon"]
    assert len(panels["cross-modal alignment loss (InfoNCE)"]) == 3
    assert panels["new term"] == ["new_term"]
    assert not {"epoch", "seconds"} & {c for cols in panels.values() for c in cols}
    plot_tokenizer_log(log, tmp_path / "tok.svg", "d, tokenizer bbq")
    assert_svg(tmp_path / "tok.svg")
    # an untrained tokenizer's log (epochs 0) has the columns and no row: the figure says so
    plot_tokenizer_log(log.clear(), tmp_path / "untrained.svg", "d, tokenizer bbq-untrained")
    assert_svg(tmp_path / "untrained.svg")
    assert 'id="axes_1"' in (tmp_path / "tok.svg").read_text()
    assert 'id="axes_' not in (tmp_path / "untrained.svg").read_text()  # a sentence, not empty panels
    with pytest.raises(InputError, match="expected a table with an `epoch` column"):
        plot_tokenizer_log(log.drop("epoch"), tmp_path / "bad.svg", "d")


def test_sid_quality_figure_from_the_quality_of_real_code_tuples(tmp_path):
    from bbqrec.quantize.sids import sid_quality  # the function assign_sids uses for sid_quality.json

    rows = []
    for stream, shift in (("text", 0), ("image", 1), ("behavior", 2)):
        rows += [{"item_id": i, "stream": stream, "c1": (i + shift) % 4, "c2": (i // 2) % 4} for i in range(1, 13)]
    quality = sid_quality(pl.DataFrame(rows), codebook_size=4)
    quality |= {"tokenizer": "bbq", "codebook": "shared"}
    for stream in quality["streams"]:
        quality["streams"][stream]["input_duplicate_rate"] = 0.0
    path = tmp_path / "sid_quality.json"
    path.write_text(json.dumps(quality))
    run_script("plot_sid_quality.py", "--quality", str(path), "--title", "d, tokenizer bbq",
               "--out", str(tmp_path / "q.svg"))
    assert_svg(tmp_path / "q.svg")


def test_dataset_stats_page_of_a_real_prepared_dataset(prepared):
    stats = json.loads((prepared("gift-cards") / "stats.json").read_text())
    page = dataset_stats_html(stats)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page  # self-contained, no scripts
    assert "gift-cards" in page and "458" in page and "2,972" in page  # users, interactions
    assert "max_history_len" in page


def comparison(by_popularity: bool = False) -> pl.DataFrame:
    """The comparison table that bbqrec.evaluation.compare builds from metrics of three variants and two seeds;
    by_popularity: its table per bucket of the test target's training count (users 1-9: "0", the rest ">=20")."""
    from bbqrec.evaluation.compare import comparison_by_popularity, comparison_table

    means = {"sasrec": 0.10, "sasrec-mm": 0.12, "bbqrec": 0.13}
    metrics, users = [], []
    for variant, mean in means.items():
        for seed in (0, 1):
            for metric in ("recall", "ndcg"):
                for k in (5, 10, 20):
                    key = {"dataset": "d", "variant": variant, "seed": seed, "metric": metric, "k": k}
                    metrics.append(key | {"split": "test", "value": mean + 0.01 * seed})
                    users += [key | {"split": "test", "user_id": u, "value": float((u * 7 + seed) % 10 < mean * 40)}
                              for u in range(1, 30)]
    if by_popularity:
        popularity = pl.DataFrame({"dataset": "d", "user_id": range(1, 30)}).with_columns(
            bucket_min=pl.when(pl.col("user_id") < 10).then(0).otherwise(20),
            bucket=pl.when(pl.col("user_id") < 10).then(pl.lit("0")).otherwise(pl.lit(">=20")),
        )
        return comparison_by_popularity(pl.DataFrame(users), popularity)
    return comparison_table(pl.DataFrame(metrics), pl.DataFrame(users))


def test_comparison_page_bolds_the_best_and_tests_against_each_baseline_run(tmp_path):
    table = comparison()
    baselines = baseline_columns(table)
    assert "sasrec" in baselines and set(baselines.values()) == {
        c[len("gain"):] for c in table.columns if c.startswith("gain")
    }
    page = comparison_html(table, ["sasrec", "sasrec-mm", "bbqrec"])
    for baseline in baselines:
        assert f"gain vs <code>{baseline}</code></th><th>p users</th><th>p seeds</th>" in page
    # bbqrec's NDCG@10 row against sasrec: the gain, then both p-values as the table holds them
    row = table.filter((pl.col("variant") == "bbqrec") & (pl.col("metric") == "ndcg") & (pl.col("k") == 10)).row(
        0, named=True)
    assert f"{row['gain']:+.1%}</span></td><td>{fmt_p(row['p_value'])}</td><td>{fmt_p(row['p_seeds'])}</td>" in page
    assert row["p_seeds"] is not None
    assert '<td class="best">0.1350 ± 0.0071</td>' in page  # bbqrec: mean of .13 and .14, sample std
    assert page.index(">sasrec<") < page.index(">sasrec-mm<") < page.index(">bbqrec<")  # config order
    plot_comparison(table, tmp_path / "c.svg", ["sasrec", "sasrec-mm", "bbqrec"])
    assert_svg(tmp_path / "c.svg")
    # results/comparison.parquet also holds the validation split: the page and the chart show the test rows only
    both = pl.concat([table.with_columns(split=pl.lit("valid"), mean=pl.col("mean") + 0.5), table])
    assert comparison_html(both, ["sasrec", "sasrec-mm", "bbqrec"]) == page
    plot_comparison(both, tmp_path / "both.svg", ["sasrec", "sasrec-mm", "bbqrec"])
    assert (tmp_path / "both.svg").read_bytes() == (tmp_path / "c.svg").read_bytes()


def test_comparison_page_has_a_table_per_popularity_bucket():
    table, buckets = comparison(), comparison(by_popularity=True)
    page = comparison_html(table, ["sasrec", "sasrec-mm", "bbqrec"], by_popularity=buckets)
    assert page.count("<table>") == 2 + 2  # the headline and cutoff tables, then one per bucket
    rare = buckets.filter((pl.col("bucket") == "0") & (pl.col("variant") == "bbqrec") & (pl.col("metric") == "ndcg")
                          & (pl.col("k") == 10)).row(0, named=True)
    assert rare["users"] == 9
    row = f'<tr><td>0</td><td>9</td><td class="name">bbqrec</td><td>2</td>'
    assert row in page and page.index(row) < page.index("<td>&gt;=20</td><td>20</td>")
    assert f"{rare['mean']:.4f} ± {rare['std']:.4f}</td>" in page[page.index(row):]
    valid_buckets = buckets.with_columns(split=pl.lit("valid"), mean=pl.col("mean") + 0.5)
    both = pl.concat([valid_buckets, buckets])
    assert comparison_html(table, ["sasrec", "sasrec-mm", "bbqrec"], by_popularity=both) == page
    assert comparison_html(table).count("<table>") == 2  # the section is optional
    with pytest.raises(InputError, match="comparison by popularity: expected the columns"):
        comparison_html(table, by_popularity=table)


def test_comparison_page_ends_with_where_the_runs_were_trained():
    def run(dataset, variant, cpu, instruction_set, code="0123456789ab"):
        return {"dataset": dataset, "variant": variant, "seed": 0, "cpu": cpu, "instruction_set": instruction_set,
                "threads": "1", "code": code}

    origins = pl.DataFrame([
        run("d", "sasrec", "AMD EPYC", "AVX512"), run("d", "bbqrec", "AMD EPYC", "AVX512"),
        run("e", "sasrec", "AMD EPYC", "AVX512"), run("e", "bbqrec", "Xeon <v4>", "AVX2"),
    ])
    table = comparison()
    page = comparison_html(table, ["sasrec", "sasrec-mm", "bbqrec"], origins=origins)
    section = page[page.index("<h2>Where the runs were trained</h2>"):]
    cells = lambda *values: "".join(f'<td class="name">{v}</td>' for v in values)  # noqa: E731
    assert f"<tr>{cells('AMD EPYC', 'AVX512', '1', '0123456789ab', 'd, e', '3')}</tr>" in section
    assert f"<tr>{cells('Xeon &lt;v4&gt;', 'AVX2', '1', '0123456789ab', 'e', '1')}</tr>" in section  # escaped
    assert section.count("were trained on") == 1  # only e mixes machines
    assert "The runs of e were trained on AMD EPYC (AVX512) and Xeon &lt;v4&gt; (AVX2)" in section
    assert comparison_html(table, ["sasrec", "sasrec-mm", "bbqrec"]) == page.replace(
        page[page.index("\n<h2>Where the runs were trained</h2>"):page.index("\n</body>")], "")
    with pytest.raises(InputError, match="comparison origins: expected the columns"):
        comparison_html(table, origins=origins.drop("code"))


def test_report_rules_are_planned_by_the_default_run(default_config_jobs):
    for rule in REPORT_RULES:
        assert default_config_jobs.get(rule, 0) >= 1, rule
