"""The comparison table: mean ± std over seeds, gain over sasrec and the paired test, against hand computation;
the same per bucket of the test target's training count."""

from collections import Counter

import polars as pl
import pytest
from scipy.stats import t as student_t
from scipy.stats import wilcoxon

from bbqrec.evaluation.compare import (
    comparison_by_popularity,
    comparison_table,
    markdown,
    popularity_buckets,
    popularity_markdown,
    target_popularity,
)
from bbqrec.io import InputError
from bbqrec.origins import mixed_machines, origins_markdown, run_origin


def metrics_rows(variant, seed, recall10):
    return {"dataset": "d", "variant": variant, "seed": seed, "split": "test", "metric": "recall", "k": 10,
            "value": recall10}


def user_row(variant, seed, user_id, value, metric="recall", split="test"):
    return {"dataset": "d", "variant": variant, "seed": seed, "split": split, "user_id": user_id, "metric": metric,
            "k": 10, "value": float(value)}


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
        users += [user_row("sasrec", seed, u, v) for u, v in base.items()]
        users += [user_row("bbqrec", seed, u, v) for u, v in ours.items()]
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


def test_each_split_is_compared_on_its_own_rows():
    # The same two runs on both splits: bbqrec wins on the test split, loses on the validation split.
    metrics = pl.DataFrame(
        [{**metrics_rows(variant, 0, value), "split": split}
         for split, values in (("test", (0.10, 0.20)), ("valid", (0.30, 0.15)))
         for variant, value in zip(("sasrec", "bbqrec"), values)]
    )
    hits = {("test", "sasrec"): [0, 0, 1, 0, 1], ("test", "bbqrec"): [1, 1, 1, 1, 0],
            ("valid", "sasrec"): [1, 1, 0, 1, 1], ("valid", "bbqrec"): [0, 1, 0, 0, 0]}
    users = pl.DataFrame(
        [user_row(variant, 0, u, v, split=split)
         for (split, variant), values in hits.items() for u, v in enumerate(values, start=1)]
    )
    p_values = {}
    for split, (base, ours) in (("test", (0.10, 0.20)), ("valid", (0.30, 0.15))):
        table = comparison_table(metrics, users, baselines={"sasrec": ""}, split=split)
        assert set(table["split"]) == {split}
        row = table.filter(pl.col("variant") == "bbqrec").row(0, named=True)
        assert row["mean"] == ours and row["gain"] == pytest.approx(ours / base - 1)
        # test: +1 +1 0 +1 -1; validation: -1 0 0 -1 -1
        diff = [o - b for b, o in zip(hits[split, "sasrec"], hits[split, "bbqrec"])]
        p_values[split] = row["p_value"]
        assert p_values[split] == pytest.approx(wilcoxon(diff, zero_method="wilcox").pvalue)
    assert p_values["test"] != pytest.approx(p_values["valid"])  # so each split's check above tells them apart
    only_sasrec = {"sasrec": ""}
    assert markdown(table, ["sasrec", "bbqrec"], baselines=only_sasrec).startswith(
        "# Comparison (validation split, full ranking"
    )
    both = pl.concat([table, comparison_table(metrics, users, only_sasrec, split="test")])
    with pytest.raises(InputError, match=r"rows of one split of \['test', 'valid'\], got \['test', 'valid'\]"):
        markdown(both.sort("split"), ["bbqrec"], baselines=only_sasrec)
    with pytest.raises(InputError, match=r"per-user metrics: expected a `split` column .*got columns \['dataset'"):
        comparison_table(metrics, users.drop("split"))
    with pytest.raises(InputError, match=r"split: expected one of \['test', 'valid'\], got 'validation'"):
        comparison_table(metrics, users, split="validation")  # not an empty table


def test_every_variant_is_also_tested_against_sasrec_mm():
    metrics = pl.DataFrame(
        [metrics_rows("sasrec", 0, 0.10), metrics_rows("sasrec-mm", 0, 0.12), metrics_rows("bbqrec", 0, 0.15)]
    )
    base = {1: 0, 2: 0, 3: 0, 4: 1, 5: 0, 6: 0}
    multimodal = {1: 1, 2: 0, 3: 0, 4: 1, 5: 0, 6: 0}
    ours = {1: 1, 2: 1, 3: 1, 4: 0, 5: 1, 6: 1}
    users = [
        user_row(variant, 0, u, v)
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
    assert "gain vs sasrec | p users | p seeds | gain vs sasrec-mm | p users | p seeds |" in text
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
        user_row("sasrec", seed, u, v)
        for seed, values in base.items()
        for u, v in values.items()
    ] + [user_row("bbqrec-no-club", 0, u, v) for u, v in ablation.items()]
    row = comparison_table(metrics, pl.DataFrame(users)).filter(pl.col("variant") == "bbqrec-no-club").row(0, named=True)
    assert row["seeds"] == 1 and row["mean"] == pytest.approx(0.12)
    assert row["gain"] == pytest.approx(0.12 / 0.10 - 1)  # not 0.12 / 0.14 - 1 (the 3-seed mean)
    # seed 0 against seed 0: +1, -1, +1, +1 (not the differences from sasrec's per-user means over 3 seeds)
    assert row["p_value"] == pytest.approx(wilcoxon([1, -1, 1, 1], zero_method="wilcox").pvalue)
    assert row["gain_mm"] is None and row["p_value_mm"] is None  # sasrec-mm was not run
    assert row["p_seeds"] is None  # one seed: no spread to test against


def test_the_seed_p_value_is_welchs_t_test_over_the_seeds_both_rows_have():
    # bbqrec seeds 0-2 .10/.12/.14 (mean .12, variance 4e-4); sasrec seeds 0-3 .09/.10/.11/.30: seed 3 is not shared,
    # so the baseline side is .09/.10/.11 (mean .10, variance 1e-4).
    metrics = pl.DataFrame(
        [metrics_rows("bbqrec", seed, value) for seed, value in enumerate((0.10, 0.12, 0.14))]
        + [metrics_rows("sasrec", seed, value) for seed, value in enumerate((0.09, 0.10, 0.11, 0.30))]
    )
    users = pl.DataFrame(
        [user_row(variant, seed, u, (u + seed) % 2)
         for variant in ("sasrec", "bbqrec") for seed in range(4 if variant == "sasrec" else 3) for u in range(4)]
    )
    row = comparison_table(metrics, users).filter(pl.col("variant") == "bbqrec").row(0, named=True)
    # by hand: se^2 = 4e-4/3 + 1e-4/3, t = .02 / se = 1.5492; Welch df = (5e-4/3)^2 / ((4e-4/3)^2/2 + (1e-4/3)^2/2)
    # = 2.9412; p = 2 * P(T_df > t)
    se = ((4e-4 + 1e-4) / 3) ** 0.5
    df = (5e-4 / 3) ** 2 / ((4e-4 / 3) ** 2 / 2 + (1e-4 / 3) ** 2 / 2)
    assert 0.02 / se == pytest.approx(1.5492, abs=1e-4) and df == pytest.approx(2.9412, abs=1e-4)
    assert row["p_seeds"] == pytest.approx(2 * student_t.sf(0.02 / se, df), rel=1e-9)
    assert 0.2 < row["p_seeds"] < 0.25  # the 4th sasrec seed (.30) would have made it about .6
    assert row["gain"] == pytest.approx(0.12 / 0.10 - 1)
    # the baseline's own row has no test; identical seeds on both sides have no spread and no test
    assert comparison_table(metrics, users).filter(pl.col("variant") == "sasrec")["p_seeds"].to_list() == [None]
    same = pl.DataFrame([metrics_rows(v, seed, 0.1) for v in ("sasrec", "bbqrec") for seed in range(3)])
    assert comparison_table(same, users).filter(pl.col("variant") == "bbqrec")["p_seeds"].to_list() == [None]


def test_popularity_buckets_and_bad_edges():
    assert popularity_buckets([1, 5, 20]) == [(0, "0"), (1, "1-4"), (5, "5-19"), (20, ">=20")]
    assert popularity_buckets([2]) == [(0, "0-1"), (2, ">=2")]
    for edges in ([5, 1], [1, 1], [0, 5], []):
        with pytest.raises(InputError, match=r"compare.popularity_edges: expected positive, strictly increasing"):
            popularity_buckets(edges)


def test_target_popularity_counts_the_training_sequences():
    train = pl.DataFrame({"user_id": [1, 2, 3], "items": [[7, 8, 7], [8, 9], [7]]})  # 7: 3 times, 8: 2, 9: 1
    test = pl.DataFrame({"user_id": [1, 2, 3, 4], "history": [[7], [8], [7], [7]], "target": [9, 7, 5, 8]})
    frame = target_popularity(train, test, [1, 3])
    assert frame.sort("user_id").select("user_id", "train_count", "bucket", "bucket_min").rows() == [
        (1, 1, "1-2", 1), (2, 3, ">=3", 3), (3, 0, "0", 0), (4, 2, "1-2", 1),  # item 5 never in training
    ]


def test_target_popularity_on_real_data_matches_a_count(prepared):
    data = prepared("scientific-mm")
    train, test = pl.read_parquet(data / "train.parquet"), pl.read_parquet(data / "test.parquet")
    counts = Counter(item for items in train["items"].to_list() for item in items)
    frame = target_popularity(train, test)
    assert frame.height == test.height  # one row per test user
    expected = {user: counts[target] for user, target in zip(test["user_id"].to_list(), test["target"].to_list())}
    assert dict(zip(frame["user_id"].to_list(), frame["train_count"].to_list())) == expected
    assert frame.filter(pl.col("train_count") >= 20)["bucket"].unique().to_list() == [">=20"]
    assert set(frame["bucket"]) == {"0", "1-4", "5-19", ">=20"}


def test_comparison_by_popularity_is_the_table_within_each_bucket():
    # users 1-4 have a rare target (bucket "0"), users 5-8 a popular one (">=20"); two seeds
    popularity = pl.DataFrame(
        {"dataset": "d", "user_id": list(range(1, 9)), "bucket_min": [0] * 4 + [20] * 4,
         "bucket": ["0"] * 4 + [">=20"] * 4}
    )
    base = {0: [0, 0, 0, 1, 1, 1, 0, 1], 1: [0, 0, 1, 0, 1, 1, 1, 1]}
    ours = {0: [1, 1, 0, 1, 1, 0, 0, 1], 1: [1, 0, 1, 1, 1, 1, 0, 1]}
    users = pl.DataFrame(
        [user_row(variant, seed, u + 1, v, "ndcg")
         for variant, values in (("sasrec", base), ("bbqrec", ours))
         for seed, row in values.items()
         for u, v in enumerate(row)]
    )
    table = comparison_by_popularity(users, popularity, baselines={"sasrec": ""})
    rare = table.filter((pl.col("bucket") == "0") & (pl.col("variant") == "bbqrec")).row(0, named=True)
    # seed means over users 1-4: bbqrec .75 and .75, sasrec .25 and .25
    assert (rare["users"], rare["seeds"], rare["mean"], rare["std"]) == (4, 2, 0.75, 0.0)
    assert rare["gain"] == pytest.approx(0.75 / 0.25 - 1)
    # per-user means over seeds, bbqrec - sasrec: 1, .5, 0, .5
    assert rare["p_value"] == pytest.approx(wilcoxon([1, 0.5, 0, 0.5], zero_method="wilcox").pvalue)
    # users 5-8: seed means bbqrec .5 and .75, sasrec .75 and 1; per-user differences 0, -.5, -.5, 0
    popular = table.filter((pl.col("bucket") == ">=20") & (pl.col("variant") == "bbqrec")).row(0, named=True)
    assert popular["mean"] == pytest.approx(0.625) and popular["std"] == pytest.approx(0.1767767, rel=1e-6)
    assert popular["gain"] == pytest.approx(0.625 / 0.875 - 1)
    assert popular["p_value"] == pytest.approx(wilcoxon([0, -0.5, -0.5, 0], zero_method="wilcox").pvalue)
    # the validation split's table is built the same way from its own rows
    valid = comparison_by_popularity(users.with_columns(split=pl.lit("valid")), popularity, {"sasrec": ""}, "valid")
    assert valid.equals(table.with_columns(split=pl.lit("valid")))
    # no gain over a baseline that scored 0 (bucket ">=20" with the roles swapped would be 0 / 0)
    swapped = comparison_by_popularity(
        users.with_columns(value=pl.when(pl.col("variant") == "sasrec").then(0.0).otherwise(pl.col("value"))),
        popularity, baselines={"sasrec": ""},
    )
    assert swapped.filter(pl.col("variant") == "bbqrec")["gain"].to_list() == [None, None]
    assert swapped.filter(pl.col("variant") == "sasrec")["gain"].to_list() == [0.0, 0.0]  # the baseline itself
    text = popularity_markdown(table, ["sasrec", "bbqrec"], headline=(("ndcg", 10),), baselines={"sasrec": ""})
    lines = text.splitlines()
    # p seeds: none in bucket "0" (no spread on either side); in ">=20" Welch's t = -sqrt(2) with 2 degrees of
    # freedom, whose two-sided p-value is 1 - sqrt(2)/2 = 0.29
    assert rare["p_seeds"] is None and popular["p_seeds"] == pytest.approx(1 - 2**0.5 / 2)
    assert lines.index("| 0 | 4 | `bbqrec` | 2 | 0.7500 ± 0.0000 | +200.0% | 0.25 |  |") < lines.index(
        "| >=20 | 4 | `sasrec` | 2 | 0.8750 ± 0.1768 |  |  |  |"
    )
    assert "| >=20 | 4 | `bbqrec` | 2 | 0.6250 ± 0.1768 | -28.6% | 0.5 | 0.29 |" in lines


def test_the_popularity_table_is_the_same_on_every_call(prepared):
    # Thousands of users per bucket: polars' unordered joins and groups would add the same floats in another order
    # on every call, and the last bits of means, std and gains moved between two runs on the same evaluations.
    data = prepared("scientific-mm")
    popularity = target_popularity(pl.read_parquet(data / "train.parquet"), pl.read_parquet(data / "test.parquet"))
    popularity = popularity.with_columns(dataset=pl.lit("d"))
    users = pl.concat(
        [
            popularity.select(
                "dataset", "user_id", variant=pl.lit(variant), seed=pl.lit(seed), split=pl.lit("test"),
                metric=pl.lit("ndcg"), k=pl.lit(10),
                value=1.0 / (2.0 + ((pl.col("user_id") * (7 + seed) + len(variant)) % 13)).log(2),
            )
            for variant in ("sasrec", "sasrec-mm", "bbqrec")
            for seed in (0, 1, 2)
        ]
    )
    first = comparison_by_popularity(users, popularity)
    assert first.height == 4 * 3  # buckets x variants
    for _ in range(4):
        assert comparison_by_popularity(users, popularity).equals(first)


def trained_on(model, capability, commit="0123456789abcdef0123", changes=False):
    """An evaluation's provenance as evaluate writes it: the train run's code, platform and CPU."""
    return {"seed": 0, "config": {"trained": {
        "code": {"commit": commit, "uncommitted_changes": changes}, "platform": "Linux",
        "cpu": {"model": model, "logical_cores": 2, "torch_capability": capability, "torch_threads": 1}}}}


def test_run_origin_reads_the_train_runs_cpu_and_commit():
    assert run_origin(trained_on("AMD EPYC", "AVX512")) == {
        "cpu": "AMD EPYC", "instruction_set": "AVX512", "threads": "1", "code": "0123456789ab"}
    assert run_origin(trained_on("Xeon", "AVX2", changes=True))["code"] == "0123456789ab + changes"
    old = {"seed": 0, "config": {"dataset": "d"}}  # evaluated before the train run's provenance was copied
    assert set(run_origin(old).values()) == {"not recorded"}


def test_runs_trained_on_two_instruction_sets_are_flagged_per_dataset():
    runs = [("a", "sasrec", 0, trained_on("AMD EPYC", "AVX512")), ("a", "bbqrec", 0, trained_on("Xeon", "AVX2")),
            ("b", "sasrec", 0, trained_on("AMD EPYC", "AVX512")),
            ("b", "bbqrec", 0, trained_on("AMD EPYC", "AVX512", commit="fedcba9876543210")),  # another commit only
            ("b", "bbqrec", 1, {"config": {}})]  # not recorded: not another machine
    origins = pl.DataFrame([{"dataset": d, "variant": v, "seed": s, **run_origin(p)} for d, v, s, p in runs])
    assert mixed_machines(origins) == {"a": "AMD EPYC (AVX512) and Xeon (AVX2)"}
    text = origins_markdown(origins)
    assert "| AMD EPYC | AVX512 | 1 | 0123456789ab | a, b | 2 |" in text
    assert "| AMD EPYC | AVX512 | 1 | fedcba987654 | b | 1 |" in text
    assert "| Xeon | AVX2 | 1 | 0123456789ab | a | 1 |" in text
    assert "| not recorded | not recorded | not recorded | not recorded | b | 1 |" in text
    assert text.count("Warning:") == 1
    assert "Warning: the runs of a were trained on AMD EPYC (AVX512) and Xeon (AVX2)" in text
