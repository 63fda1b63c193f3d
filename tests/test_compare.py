"""The comparison table: mean ± std over seeds, gain over sasrec and the paired test, against hand computation."""

import polars as pl
import pytest
from scipy.stats import wilcoxon

from bbqrec.evaluation.compare import comparison_table, markdown


def metrics_rows(variant, seed, recall10):
    return {"dataset": "d", "variant": variant, "seed": seed, "split": "test", "metric": "recall", "k": 10,
            "value": recall10}


def test_mean_std_gain_and_paired_wilcoxon():
    metrics = pl.DataFrame(
        [metrics_rows("sasrec", 0, 0.10), metrics_rows("sasrec", 1, 0.12),
         metrics_rows("bbqrec", 0, 0.13), metrics_rows("bbqrec", 1, 0.14),
         {**metrics_rows("bbqrec", 0, 0.5), "split": "valid"}]  # validation rows never enter the table
    )
    # per user and seed: bbqrec is better for users 1..6 and worse for user 7
    base = {1: 0, 2: 0, 3: 1, 4: 0, 5: 0, 6: 0, 7: 1}
    ours = {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 0}
    users = []
    for seed in (0, 1):
        users += [{"dataset": "d", "variant": "sasrec", "seed": seed, "user_id": u, "metric": "recall", "k": 10,
                   "value": float(v)} for u, v in base.items()]
        users += [{"dataset": "d", "variant": "bbqrec", "seed": seed, "user_id": u, "metric": "recall", "k": 10,
                   "value": float(v)} for u, v in ours.items()]
    table = comparison_table(metrics, pl.DataFrame(users))
    ours_row = table.filter(pl.col("variant") == "bbqrec").row(0, named=True)
    assert ours_row["mean"] == pytest.approx(0.135)
    assert ours_row["std"] == pytest.approx(0.00707107, rel=1e-5)  # sample std of (.13, .14)
    assert ours_row["seeds"] == 2
    assert ours_row["gain"] == pytest.approx(0.135 / 0.11 - 1)
    # differences +1 x5 (user 3 ties and is dropped) and -1 x1
    expected = wilcoxon([1, 1, 0, 1, 1, 1, -1], zero_method="wilcox").pvalue
    assert ours_row["p_value"] == pytest.approx(expected)
    base_row = table.filter(pl.col("variant") == "sasrec").row(0, named=True)
    assert base_row["gain"] == 0.0 and base_row["p_value"] is None
    text = markdown(table, ["sasrec", "bbqrec"])
    assert "| `bbqrec` | 2 | 0.1350 ± 0.0071 | +22.7% |" in text


def test_every_variant_is_also_tested_against_sasrec_mm():
    metrics = pl.DataFrame(
        [metrics_rows("sasrec", 0, 0.10), metrics_rows("sasrec-mm", 0, 0.12), metrics_rows("bbqrec", 0, 0.15)]
    )
    base = {1: 0, 2: 0, 3: 0, 4: 1, 5: 0, 6: 0}
    multimodal = {1: 1, 2: 0, 3: 0, 4: 1, 5: 0, 6: 0}
    ours = {1: 1, 2: 1, 3: 1, 4: 0, 5: 1, 6: 1}
    users = [
        {"dataset": "d", "variant": variant, "seed": 0, "user_id": u, "metric": "recall", "k": 10, "value": float(v)}
        for variant, values in (("sasrec", base), ("sasrec-mm", multimodal), ("bbqrec", ours))
        for u, v in values.items()
    ]
    table = comparison_table(metrics, pl.DataFrame(users))
    ours_row = table.filter(pl.col("variant") == "bbqrec").row(0, named=True)
    assert ours_row["gain"] == pytest.approx(0.15 / 0.10 - 1)
    assert ours_row["gain_mm"] == pytest.approx(0.15 / 0.12 - 1)
    # against sasrec-mm: user 1 ties (dropped), users 2, 3, 5, 6 gain, user 4 loses
    assert ours_row["p_value_mm"] == pytest.approx(wilcoxon([0, 1, 1, -1, 1, 1], zero_method="wilcox").pvalue)
    assert ours_row["p_value"] == pytest.approx(wilcoxon([1, 1, 1, -1, 1, 1], zero_method="wilcox").pvalue)
    mm_row = table.filter(pl.col("variant") == "sasrec-mm").row(0, named=True)
    assert mm_row["gain_mm"] == 0.0 and mm_row["p_value_mm"] is None
    text = markdown(table, ["sasrec", "sasrec-mm", "bbqrec"])
    assert "gain vs sasrec | p | gain vs sasrec-mm | p |" in text
    assert "| `bbqrec` | 1 | 0.1500 ± 0.0000 | +50.0% |" in text and "| +25.0% |" in text


def test_a_one_seed_row_is_compared_with_the_baselines_same_seed():
    # sasrec ran seeds 0, 1, 2; the ablation seed 0 only: its gain and test use sasrec's seed 0 alone
    metrics = pl.DataFrame(
        [metrics_rows("sasrec", 0, 0.10), metrics_rows("sasrec", 1, 0.16), metrics_rows("sasrec", 2, 0.16),
         metrics_rows("bbqrec-no-club", 0, 0.12)]
    )
    base = {0: {1: 0, 2: 1, 3: 0, 4: 0}, 1: {1: 1, 2: 1, 3: 1, 4: 0}, 2: {1: 1, 2: 1, 3: 0, 4: 1}}
    ablation = {1: 1, 2: 0, 3: 1, 4: 1}
    users = [
        {"dataset": "d", "variant": "sasrec", "seed": seed, "user_id": u, "metric": "recall", "k": 10, "value": float(v)}
        for seed, values in base.items()
        for u, v in values.items()
    ] + [
        {"dataset": "d", "variant": "bbqrec-no-club", "seed": 0, "user_id": u, "metric": "recall", "k": 10,
         "value": float(v)}
        for u, v in ablation.items()
    ]
    row = comparison_table(metrics, pl.DataFrame(users)).filter(pl.col("variant") == "bbqrec-no-club").row(0, named=True)
    assert row["seeds"] == 1 and row["mean"] == pytest.approx(0.12)
    assert row["gain"] == pytest.approx(0.12 / 0.10 - 1)  # not 0.12 / 0.14 - 1 (the 3-seed mean)
    # seed 0 against seed 0: +1, -1, +1, +1 (not the differences from sasrec's per-user means over 3 seeds)
    assert row["p_value"] == pytest.approx(wilcoxon([1, -1, 1, 1], zero_method="wilcox").pvalue)
    assert row["gain_mm"] is None and row["p_value_mm"] is None  # sasrec-mm was not run
