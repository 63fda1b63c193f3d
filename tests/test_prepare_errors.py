"""Bad input: copies of a few real lines with one corrupted; the message names the file and line (or key).

Every case also checks that nothing was written to the output folder.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from bbqrec.data import load_dataset_config, prepare_dataset
from bbqrec.io import InputError


def copy_source(shared_data: Path, tmp_path: Path, folder: str, files: list[str], head: int | None = None) -> Path:
    """Copy `files` of a source folder to tmp_path/<folder> (only the first `head` lines of text files)."""
    dest = tmp_path / "data" / folder
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        if head is None:
            shutil.copy(shared_data / folder / name, dest / name)
        else:
            lines = (shared_data / folder / name).read_bytes().split(b"\n")[:head]
            (dest / name).write_bytes(b"\n".join(lines) + b"\n")
    return dest


def replace_line(path: Path, line_no: int, edit) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[line_no - 1] = edit(lines[line_no - 1])
    path.write_bytes(b"\n".join(lines))


def expect_error(repo_root, tmp_path, name: str, pattern: str, cfg=None, **options) -> None:
    cfg = cfg or load_dataset_config(repo_root / "config" / "datasets" / f"{name}.yaml")
    out = tmp_path / "out" / "data"
    with pytest.raises(InputError, match=pattern):
        prepare_dataset(cfg, tmp_path / "data", out, **options)
    assert not out.exists(), "nothing may be written on error"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


S3_FILES = ["Beauty_item_map.tsv", "Beauty_user_map.tsv", "Beauty_item_titles.tsv"]


def s3rec_copy(shared_data, tmp_path) -> Path:
    copy_source(shared_data, tmp_path, "amazon-s3rec-asin", S3_FILES)
    return copy_source(shared_data, tmp_path, "amazon-s3rec", ["Beauty.txt"], head=20)


def test_s3rec_small_copy_works(repo_root, shared_data, tmp_path):
    s3rec_copy(shared_data, tmp_path)
    cfg = load_dataset_config(repo_root / "config" / "datasets" / "beauty.yaml")
    stats = prepare_dataset(cfg, tmp_path / "data", tmp_path / "out")
    assert stats["users"] == 20  # the corrupted copies below fail only because of the corruption


def test_non_integer_in_s3rec_line(repo_root, shared_data, tmp_path):
    folder = s3rec_copy(shared_data, tmp_path)
    replace_line(folder / "Beauty.txt", 7, lambda line: line.replace(b" ", b" x", 1))
    expect_error(repo_root, tmp_path, "beauty", r"Beauty\.txt, line 7: expected space-separated integers, got 'x")


def test_s3rec_item_missing_from_asin_map(repo_root, shared_data, tmp_path):
    folder = s3rec_copy(shared_data, tmp_path)
    replace_line(folder / "Beauty.txt", 4, lambda line: line + b" 999999")
    expect_error(repo_root, tmp_path, "beauty", r"Beauty\.txt, line 4: s3_item 999999 is not in .*Beauty_item_map\.tsv")


def test_asin_map_that_is_not_one_to_one(repo_root, shared_data, tmp_path):
    s3rec_copy(shared_data, tmp_path)
    item_map = tmp_path / "data" / "amazon-s3rec-asin" / "Beauty_item_map.tsv"
    asin_of_item_1 = item_map.read_bytes().split(b"\n")[1].split(b"\t")[1]
    replace_line(item_map, 9, lambda line: line.split(b"\t")[0] + b"\t" + asin_of_item_1)
    expect_error(repo_root, tmp_path, "beauty", r"Beauty_item_map\.tsv, line 9: asin 'B004756YJA' appears twice")


def test_missing_column(repo_root, shared_data, tmp_path):
    folder = copy_source(shared_data, tmp_path, "movielens-100k", ["ml-100k.inter", "ml-100k.item"], head=200)
    replace_line(folder / "ml-100k.inter", 1, lambda line: line.replace(b"timestamp:float", b"time:float"))
    expect_error(
        repo_root,
        tmp_path,
        "movielens-mm",
        r"ml-100k\.inter, line 1: missing column\(s\) \['timestamp'\]",
        cfg={
            **load_dataset_config(repo_root / "config" / "datasets" / "movielens-mm.yaml"),
            "sources": ["movielens-100k"],
        },
    )


def test_missing_file(repo_root, shared_data, tmp_path):
    files = [
        "Scientific.item2index",
        "Scientific.user2index",
        "Scientific.text",
        "Scientific.train.inter",
        "Scientific.valid.inter",
    ]
    copy_source(shared_data, tmp_path, "amazon-scientific-mm", files)
    expect_error(repo_root, tmp_path, "scientific-mm", r"Scientific\.test\.inter: file not found")


SCI_FILES = [
    "Scientific.item2index",
    "Scientific.user2index",
    "Scientific.text",
    "Scientific.train.inter",
    "Scientific.valid.inter",
    "Scientific.test.inter",
]


def test_split_item_missing_from_catalogue(repo_root, shared_data, tmp_path):
    folder = copy_source(shared_data, tmp_path, "amazon-scientific-mm", SCI_FILES)
    replace_line(folder / "Scientific.test.inter", 12, lambda line: line.rsplit(b"\t", 1)[0] + b"\t99999")
    expect_error(
        repo_root,
        tmp_path,
        "scientific",
        r"Scientific\.test\.inter, line 12: item_id 99999 is not in " r".*Scientific\.item2index",
        cfg=_sci_cfg(repo_root, "amazon-scientific-mm"),
    )


def test_split_rows_that_disagree(repo_root, shared_data, tmp_path):
    folder = copy_source(shared_data, tmp_path, "amazon-scientific-mm", SCI_FILES)
    # Line 2 of the valid file is user 0: "0 1 2" -> 3; give it another (known) target.
    replace_line(folder / "Scientific.valid.inter", 2, lambda line: line.rsplit(b"\t", 1)[0] + b"\t7")
    expect_error(
        repo_root,
        tmp_path,
        "scientific",
        r"Scientific\.(valid|test|train)\.inter: user 0: the published " r"rows disagree",
        cfg=_sci_cfg(repo_root, "amazon-scientific-mm"),
    )


def _sci_cfg(repo_root, source: str) -> dict:
    return {**load_dataset_config(repo_root / "config" / "datasets" / "scientific.yaml"), "sources": [source]}


def test_feature_file_of_the_wrong_size(repo_root, shared_data, tmp_path):
    folder = copy_source(shared_data, tmp_path, "amazon-scientific-mm", SCI_FILES + ["Scientific.feat1CLS"])
    (folder / "Scientific.feat3CLS").write_bytes(
        (shared_data / "amazon-scientific-mm" / "Scientific.feat3CLS").read_bytes()[:-2048]
    )
    expect_error(
        repo_root,
        tmp_path,
        "scientific-mm",
        r"Scientific\.feat3CLS: 3244032 bytes, expected float32 " r"\(1585, 512\).*options\.features\.image",
    )


def test_non_utf8_text(repo_root, shared_data, tmp_path):
    copy_source(shared_data, tmp_path, "movielens-100k", ["ml-100k.inter"], head=300)
    folder = copy_source(shared_data, tmp_path, "movielens-100k", ["ml-100k.item"])
    replace_line(folder / "ml-100k.item", 5, lambda line: line.replace(b"Shorty", b"Sh\xf6rty"))  # Latin-1 ö
    cfg = {
        **load_dataset_config(repo_root / "config" / "datasets" / "movielens-mm.yaml"),
        "sources": ["movielens-100k"],
    }
    expect_error(repo_root, tmp_path, "movielens-mm", r"ml-100k\.item, line 5: not valid UTF-8", cfg=cfg)


def test_empty_after_filtering(repo_root, shared_data, tmp_path):
    copy_source(shared_data, tmp_path, "amazon2018-small-5core", ["Gift_Cards_5.json.gz", "meta_Gift_Cards.json.gz"])
    expect_error(
        repo_root,
        tmp_path,
        "gift-cards",
        r"dataset 'gift-cards': no interactions left after filtering " r"\(k_core=7, min_seq_len=3",
        k_core=7,
    )


def _gzip_lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).split(b"\n")


def test_malformed_json_line(repo_root, shared_data, tmp_path):
    folder = copy_source(shared_data, tmp_path, "amazon2018-small-5core", ["Gift_Cards_5.json.gz"])
    meta = _gzip_lines(shared_data / "amazon2018-small-5core" / "meta_Gift_Cards.json.gz")[:40]
    meta[9] = meta[9][:-5]  # cut line 10 short
    (folder / "meta_Gift_Cards.json.gz").write_bytes(gzip.compress(b"\n".join(meta)))
    expect_error(
        repo_root, tmp_path, "gift-cards", r"meta_Gift_Cards\.json\.gz, line 10: neither JSON nor a Python literal"
    )


def test_review_missing_field(repo_root, shared_data, tmp_path):
    folder = copy_source(shared_data, tmp_path, "amazon2018-small-5core", ["meta_Gift_Cards.json.gz"])
    reviews = _gzip_lines(shared_data / "amazon2018-small-5core" / "Gift_Cards_5.json.gz")[:100]
    reviews[41] = reviews[41].replace(b'"unixReviewTime"', b'"unixTime"')
    (folder / "Gift_Cards_5.json.gz").write_bytes(gzip.compress(b"\n".join(reviews)))
    expect_error(
        repo_root, tmp_path, "gift-cards", r"Gift_Cards_5\.json\.gz, line 42: missing field\(s\) \['unixReviewTime'\]"
    )


def test_generic_bad_timestamp_and_missing_column(repo_root, shared_data, tmp_path):
    folder = tmp_path / "data" / "mine"
    folder.mkdir(parents=True)
    rows = (shared_data / "movielens-100k" / "ml-100k.inter").read_text().splitlines()[1:60]
    lines = ["user,item,rating,ts", *(r.replace("\t", ",") for r in rows)]
    lines[30] = lines[30].rsplit(",", 1)[0] + ",yesterday"
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    cfg = {
        "name": "mine",
        "adapter": "generic",
        "sources": ["mine"],
        "options": {"interactions": "ratings.csv", "columns": {"user": "user", "item": "item", "timestamp": "ts"}},
    }
    expect_error(
        repo_root, tmp_path, "mine", r"ratings\.csv, line 31: column 'ts' must be an integer, got 'yesterday'", cfg=cfg
    )
    cfg["options"]["columns"]["timestamp"] = "timestamp"
    expect_error(repo_root, tmp_path, "mine", r"ratings\.csv: missing column\(s\) \['timestamp'\]", cfg=cfg)


def test_missing_source_folder(repo_root, tmp_path):
    (tmp_path / "data").mkdir()
    expect_error(
        repo_root,
        tmp_path,
        "gift-cards",
        r"amazon2018-small-5core: source folder not found " r"\(dataset 'gift-cards', key sources\[0\]",
    )


def test_bad_prepare_option_value(repo_root, shared_data, tmp_path):
    copy_source(shared_data, tmp_path, "amazon2018-small-5core", ["Gift_Cards_5.json.gz", "meta_Gift_Cards.json.gz"])
    expect_error(repo_root, tmp_path, "gift-cards", r"key 'k_core': -1 is less than the minimum of 0", k_core=-1)
