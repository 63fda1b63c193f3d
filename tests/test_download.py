"""Fetching dataset sources from their origin layout (a file:// mirror built here from the real shared data),
checksums, the derived-file recipes, and the errors that say what to do."""

from __future__ import annotations

import csv
import dataclasses
import filecmp
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import urllib.error
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bbqrec.data import download, sources
from bbqrec.data.download import ChecksumError, DownloadError, Fetcher, fetch_source, resolve_source, tree_digest
from bbqrec.data.sources import SOURCES, PosterMatch, Remote
from bbqrec.io import InputError


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lay_out(mirror: Path, files: dict[str, Path], remotes: dict[str, Remote]) -> None:
    """Copy each local file to `<mirror>/<remote.path>`, the origin layout (copies: tests may corrupt them)."""
    for name, remote in remotes.items():
        target = mirror / remote.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[name], target)


def mirror_source(mirror: Path, shared_data: Path, name: str) -> str:
    """Mirror the byte-identical files of a source; returns the mirror's file:// URL."""
    remotes = SOURCES[name].files
    lay_out(mirror, {f: shared_data / name / f for f in remotes}, remotes)
    return mirror.as_uri()


def assert_same_files(got: Path, expected: Path, names) -> None:
    for name in names:
        assert filecmp.cmp(got / name, expected / name, shallow=False), name


def poster_map_rows(shared_data: Path) -> list[PosterMatch]:
    with open(shared_data / "movielens-100k-mm" / "poster_map.tsv", encoding="utf-8", newline="") as fh:
        return [
            PosterMatch(
                int(r["ml100k_item_id"]),
                r["ml100k_title"],
                r["ml100k_year"],
                int(r["ml1m_movie_id"]),
                r["match_method"],
            )
            for r in csv.DictReader(fh, delimiter="\t")
        ]


# --- the manifest --------------------------------------------------------------------------------------------------


def test_manifest_hashes_and_files_are_those_of_the_shared_data(shared_data):
    for name, source in SOURCES.items():
        folder = shared_data / name
        for file, remote in source.files.items():
            assert download.file_sha256(folder / file) == remote.sha256, f"{name}/{file}"
        for recipe in source.recipes:
            for rel, expected in recipe.outputs.items():
                path = folder / rel
                actual = tree_digest(path) if path.is_dir() else download.file_sha256(path)
                assert actual == expected, f"{name}/{rel}"
        covered = set(source.files) | {rel for recipe in source.recipes for rel in recipe.outputs}
        assert covered == {p.name for p in folder.iterdir()} - {"SOURCE.md"}, name
    assert len(list((shared_data / "movielens-100k-mm" / "posters").iterdir())) == 1621


def test_origin_urls_follow_the_pinned_commit_layout():
    fetcher = Fetcher("amazon-scientific", None, timeout=1, retries=0)
    assert fetcher.url(SOURCES["amazon-scientific"].files["Scientific.text"]) == (
        "https://raw.githubusercontent.com/ysh-1998/CoWPiRec/db47560c2364650d22afc77080717287daec5079/"
        "dataset/Scientific/Scientific.text"
    )
    mirrored = Fetcher("movielens-100k", "file:///m/", timeout=1, retries=0)
    assert mirrored.url(sources.RECBOLE_WHEEL) == "file:///m/pypi/recbole/recbole-1.2.1-py3-none-any.whl"
    assert Fetcher("x", "relative/mirror", 1, 0).mirror == (Path("relative/mirror").resolve().as_uri())


# --- fetch_source ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["amazon-scientific", "amazon2018-small-5core", "amazon-s3rec", "amazon-scientific-mm"]
)
def test_fetch_source_from_a_mirror_is_byte_identical(shared_data, tmp_path, name):
    mirror = mirror_source(tmp_path / "mirror", shared_data, name)
    dest = tmp_path / "resources" / "data" / name
    assert fetch_source(name, dest, mirror=mirror, retries=0) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(SOURCES[name].files)
    assert_same_files(dest, shared_data / name, SOURCES[name].files)
    assert [p.name for p in dest.parent.iterdir()] == [name]  # no staging folder left


def test_fetch_source_replaces_an_existing_destination(shared_data, tmp_path):
    mirror = mirror_source(tmp_path / "mirror", shared_data, "amazon2018-small-5core")
    dest = tmp_path / "data" / "amazon2018-small-5core"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("left from an older run")
    fetch_source("amazon2018-small-5core", dest, mirror=mirror, retries=0)
    assert sorted(p.name for p in dest.iterdir()) == ["Gift_Cards_5.json.gz", "meta_Gift_Cards.json.gz"]
    assert [p.name for p in dest.parent.iterdir()] == ["amazon2018-small-5core"]


def test_s3rec_asin_maps_are_rebuilt_byte_identical(shared_data, tmp_path, monkeypatch):
    # The ULMRec pickle behind Beauty_item_titles.tsv is not in the shared data: fetch the maps recipe only.
    source = SOURCES["amazon-s3rec-asin"]
    maps_recipe = source.recipes[0]
    monkeypatch.setitem(SOURCES, source.name, dataclasses.replace(source, recipes=(maps_recipe,)))
    mirror = tmp_path / "mirror"
    lay_out(mirror, {f: shared_data / source.name / f for f in source.files}, source.files)
    lay_out(mirror, {f: shared_data / "amazon-s3rec" / f for f in maps_recipe.inputs}, maps_recipe.inputs)

    dest = fetch_source(source.name, tmp_path / "data" / source.name, mirror=mirror.as_uri(), retries=0)
    expected = [*source.files, *maps_recipe.outputs]
    assert sorted(p.name for p in dest.iterdir()) == sorted(expected)
    assert len(maps_recipe.outputs) == 6
    assert_same_files(dest, shared_data / source.name, expected)


def test_movielens_100k_is_extracted_from_the_wheel(shared_data, tmp_path, monkeypatch):
    # The real wheel is not in the shared data; a zip of the shared files at the wheel's paths stands in for it,
    # so the extracted files are still checked against the pinned hashes.
    wheel = tmp_path / "mirror" / sources.RECBOLE_WHEEL.path
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("recbole/__init__.py", "")
        for name in sources.ML100K_FILES:
            archive.write(shared_data / "movielens-100k" / name, sources.RECBOLE_ML100K + name)
    stand_in = dataclasses.replace(sources.RECBOLE_WHEEL, sha256=download.file_sha256(wheel))
    source = SOURCES["movielens-100k"]
    recipe = dataclasses.replace(source.recipes[0], inputs={stand_in.filename: stand_in})
    monkeypatch.setitem(SOURCES, source.name, dataclasses.replace(source, recipes=(recipe,)))

    dest = fetch_source(source.name, tmp_path / "data" / source.name, mirror=(tmp_path / "mirror").as_uri())
    assert sorted(p.name for p in dest.iterdir()) == sorted(sources.ML100K_FILES)
    assert_same_files(dest, shared_data / "movielens-100k", sources.ML100K_FILES)


def test_a_corrupted_file_is_a_checksum_error_naming_it_and_leaves_nothing(shared_data, tmp_path):
    mirror = tmp_path / "mirror"
    mirror_source(mirror, shared_data, "amazon2018-small-5core")
    corrupted = mirror / SOURCES["amazon2018-small-5core"].files["meta_Gift_Cards.json.gz"].path
    data = bytearray(corrupted.read_bytes())
    data[-1] ^= 0xFF
    corrupted.write_bytes(bytes(data))

    dest = tmp_path / "data" / "amazon2018-small-5core"
    with pytest.raises(ChecksumError) as err:
        fetch_source("amazon2018-small-5core", dest, mirror=mirror.as_uri(), retries=0)
    message = str(err.value)
    assert "amazon2018-small-5core/meta_Gift_Cards.json.gz" in message
    assert "expected 24ac90af3eb47d9c04458a61a44a76a882419190e027c6ec14ee0a993549c34a" in message
    assert f"got {sha256(bytes(data))}" in message
    assert list(dest.parent.iterdir()) == []


def test_a_rebuilt_file_that_differs_is_a_checksum_error(shared_data, tmp_path, monkeypatch):
    source = SOURCES["amazon-s3rec-asin"]
    recipe = dataclasses.replace(
        source.recipes[0], outputs={**source.recipes[0].outputs, "Beauty_item_map.tsv": "0" * 64}
    )
    monkeypatch.setitem(SOURCES, source.name, dataclasses.replace(source, recipes=(recipe,)))
    mirror = tmp_path / "mirror"
    lay_out(mirror, {f: shared_data / source.name / f for f in source.files}, source.files)
    lay_out(mirror, {f: shared_data / "amazon-s3rec" / f for f in recipe.inputs}, recipe.inputs)
    with pytest.raises(
        ChecksumError, match=r"amazon-s3rec-asin/Beauty_item_map.tsv \(rebuilt .*expected 0{64}, got d2db79"
    ):
        fetch_source(source.name, tmp_path / "data" / source.name, mirror=mirror.as_uri(), retries=0)
    assert list((tmp_path / "data").iterdir()) == []


def test_an_unreachable_mirror_says_what_to_do(tmp_path):
    dest = tmp_path / "data" / "amazon-scientific"
    with pytest.raises(DownloadError) as err:
        fetch_source("amazon-scientific", dest, mirror=(tmp_path / "no-mirror").as_uri(), retries=0)
    message = str(err.value)
    assert "not found at file://" in message
    assert "copy the shared data folder to <data_root>/amazon-scientific" in message
    assert "download.mirror" in message
    assert list(dest.parent.iterdir()) == []


def test_network_failures_are_retried_then_explained(tmp_path, monkeypatch):
    calls, pauses = [], []

    def offline(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    monkeypatch.setattr(download.time, "sleep", pauses.append)
    with pytest.raises(DownloadError) as err:
        fetch_source("amazon2018-small-5core", tmp_path / "data" / "amazon2018-small-5core", retries=2)
    # Each file tried is tried 3 times (1 + 2 retries), from the origin since no mirror is set; the other file is
    # cancelled if it had not started when the first one failed.
    tries = Counter(calls)
    assert set(tries.values()) == {3} and 1 <= len(tries) <= 2
    assert all(url.startswith("https://raw.githubusercontent.com/Alex-Shen1121/AmazonSearchEngine/") for url in tries)
    assert sorted(pauses) == sorted([1, 2] * len(tries))
    assert "cannot download https://raw.githubusercontent.com/" in str(err.value)
    assert "Temporary failure in name resolution" in str(err.value)
    assert "copy the shared data folder to <data_root>/amazon2018-small-5core" in str(err.value)


def test_a_transient_failure_is_retried(shared_data, tmp_path, monkeypatch):
    mirror = mirror_source(tmp_path / "mirror", shared_data, "amazon2018-small-5core")
    real_urlopen, failed = download.urllib.request.urlopen, []

    def flaky(url, timeout):
        if url not in failed:
            failed.append(url)
            raise TimeoutError("timed out")
        return real_urlopen(url, timeout=timeout)

    monkeypatch.setattr(download.urllib.request, "urlopen", flaky)
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    dest = fetch_source("amazon2018-small-5core", tmp_path / "data" / "amazon2018-small-5core", mirror=mirror)
    assert len(failed) == 2
    assert_same_files(dest, shared_data / "amazon2018-small-5core", SOURCES["amazon2018-small-5core"].files)


def test_pypi_files_are_located_through_the_index_and_its_hash_must_match(monkeypatch):
    listed = {"sha256": sources.RECBOLE_WHEEL.sha256}
    requests = []

    def index(request, timeout):
        requests.append((request.full_url, request.get_header("Accept")))
        files = [{"filename": "recbole-1.2.1-py3-none-any.whl", "url": "https://files.example/r.whl", "hashes": listed}]
        return io.BytesIO(json.dumps({"files": files}).encode())

    monkeypatch.setattr(download.urllib.request, "urlopen", index)
    fetcher = Fetcher("movielens-100k", None, timeout=1, retries=0)
    assert fetcher.url(sources.RECBOLE_WHEEL) == "https://files.example/r.whl"
    assert requests == [("https://pypi.org/simple/recbole/", "application/vnd.pypi.simple.v1+json")]
    listed["sha256"] = "f" * 64
    with pytest.raises(ChecksumError, match=f"PyPI lists sha256 f{{64}}, expected {sources.RECBOLE_WHEEL.sha256}"):
        fetcher.url(sources.RECBOLE_WHEEL)


def test_unknown_source_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="unknown source 'amazon-beauty': expected one of amazon-s3rec, "):
        fetch_source("amazon-beauty", tmp_path / "x")


def test_resolve_source_prefers_data_root(tmp_path):
    (tmp_path / "shared" / "amazon-scientific").mkdir(parents=True)
    assert resolve_source("amazon-scientific", tmp_path / "shared", "resources") == (
        tmp_path / "shared" / "amazon-scientific"
    )
    assert resolve_source("movielens-100k", tmp_path / "shared", "resources") == Path("resources/data/movielens-100k")


# --- recipes -----------------------------------------------------------------------------------------------------


def test_s3rec_maps_reject_sequences_that_disagree(shared_data):
    s3rec = (shared_data / "amazon-s3rec" / "Beauty.txt").read_text().splitlines()[:3]
    asins = (shared_data / "amazon-s3rec-asin" / "Beauty.user_sequence.txt").read_text().splitlines()[:3]
    item_map, user_map = sources.derive_s3rec_maps("\n".join(s3rec), "\n".join(asins), "slice")
    assert user_map == {1: "A1YJEY40YUW4SE", 2: "A60XNB876KYML", 3: "A3G6XNM240RMWA"}
    assert item_map[4] == "7806397051"  # the one item on all three lines
    assert item_map[1] == "B004756YJA"  # only on line 1, fixed by its position there
    with pytest.raises(InputError, match="slice: line 2: 7 S3-Rec items but 6 ASINs"):
        sources.derive_s3rec_maps(
            "\n".join(s3rec), "\n".join([asins[0], asins[1].rsplit(" ", 1)[0], asins[2]]), "slice"
        )
    swapped = asins[2].split()
    swapped[1] = "B004756YJA"  # an ASIN of line 1 that this user never bought
    with pytest.raises(InputError, match="slice: "):
        sources.derive_s3rec_maps("\n".join(s3rec), "\n".join([*asins[:2], " ".join(swapped)]), "slice")


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_beauty_titles_are_rebuilt_from_a_llamarec_pickle(shared_data, tmp_path, protocol):
    # The pickle is LlamaRec's: smap ASIN -> int, meta int -> title, and train/val/test lists of numpy ints.
    with open(shared_data / "amazon-s3rec-asin" / "Beauty_item_titles.tsv", encoding="utf-8", newline="") as fh:
        titled = list(csv.DictReader(fh, delimiter="\t"))
    smap = {row["asin"]: k for k, row in enumerate(reversed(titled), start=1)}
    meta = {smap[row["asin"]]: row["title"] for row in titled}
    train = {1: [np.int64(k) for k in range(1, 6)]}
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    dataset = {"train": train, "val": {1: []}, "test": {1: []}, "meta": meta, "umap": {"A": 1}, "smap": smap}
    (work / "dataset.pkl").write_bytes(pickle.dumps(dataset, protocol=protocol))
    shutil.copyfile(shared_data / "amazon-s3rec-asin" / "Beauty_item_map.tsv", out / "Beauty_item_map.tsv")

    recipe = SOURCES["amazon-s3rec-asin"].recipes[1]
    recipe.build(work, out, fetch=None)
    assert len(titled) == 12086  # 15 of the 12,101 items have no title and are left out
    assert filecmp.cmp(
        out / "Beauty_item_titles.tsv", shared_data / "amazon-s3rec-asin" / "Beauty_item_titles.tsv", shallow=False
    )


def test_beauty_titles_collapse_whitespace():
    rows = sources.beauty_titles(
        [(1, "A1"), (2, "A2"), (3, "A3")], {"A1": 7, "A3": 9}, {7: "Nail\tPolish\n 5 ml", 9: ""}
    )
    assert rows == [(1, "A1", "Nail Polish 5 ml")]


def test_pickles_may_not_name_other_objects(tmp_path):
    path = tmp_path / "dataset.pkl"
    path.write_bytes(pickle.dumps({"meta": {}, "smap": {}, "hook": os.getcwd}))
    with pytest.raises(InputError, match=r"dataset.pkl: unexpected object posix.getcwd in the pickle"):
        sources.load_llamarec_pickle(path)


# Real lines of ML-1M movies.dat (Latin-1 in the GroupLens release).
ML1M_LINES = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "10::GoldenEye (1995)::Action|Adventure|Thriller",
    "73::Misérables, Les (1995)::Drama|Musical",
    "260::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi",
    "477::What's Love Got to Do with It? (1993)::Drama",
    "1320::Alien³ (1992)::Action|Horror|Sci-Fi|Thriller",
    "1471::Boys Life 2 (1997)::Drama",
    "1598::Desperate Measures (1998)::Crime|Drama|Thriller",
]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_ml1m_matching_reproduces_the_poster_map_rows(shared_data, encoding):
    items = sources.read_ml100k_items((shared_data / "movielens-100k" / "ml-100k.item").read_text(), "ml-100k.item")
    movies = sources.read_ml1m_movies("\n".join(ML1M_LINES).encode(encoding), "movies.dat")
    assert movies[2] == (73, "Misérables, Les", "1995")
    matched = sources.match_ml1m(items, movies)
    expected = [row for row in poster_map_rows(shared_data) if row.ml1m_movie_id in {1, 10, 73, 477, 1598}]
    assert matched == expected
    assert [(m.ml100k_item_id, m.match_method) for m in matched if m.ml1m_movie_id in (477, 1598)] == [
        (329, "exact_title_year"),
        (348, "exact_title_year"),  # ML-100K lists Desperate Measures twice
        (942, "normalized_title_year"),  # "What's Love Got to Do with It" without the "?"
    ]
    # Left unmatched as in the shared poster map: "Star Wars", "Alien 3" (ML-1M: "Alien³"), "Boy's Life 2".
    assert not {50, 665, 1405} & {m.ml100k_item_id for m in matched}


def test_normalise_title():
    assert sources.normalise_title("What's Love Got to Do with It?") == "what s love got to do with it"
    assert sources.normalise_title("Misérables, Les") == "miserables les"
    assert sources.normalise_title("Á köldum klaka (Cold Fever)") == "a koldum klaka cold fever"


def test_bad_movie_lines_are_input_errors():
    with pytest.raises(InputError, match=r"movies.dat: line 2: expected 'id::Title \(YYYY\)::genres'"):
        sources.read_ml1m_movies(b"1::Toy Story (1995)::Comedy\n2::Jumanji::Adventure\n", "movies.dat")


def test_posters_are_fetched_once_per_ml1m_movie_and_renamed(shared_data, tmp_path):
    rows = poster_map_rows(shared_data)
    mirror = tmp_path / "mirror"
    for row in rows:
        target = mirror / sources.ml1m_poster(row.ml1m_movie_id).path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / "movielens-100k-mm" / row.poster_file, target)
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    fetch = Fetcher("movielens-100k-mm", mirror.as_uri(), timeout=10, retries=0)

    kept = sources.fetch_posters(rows, work, out, fetch)
    assert kept == rows
    assert tree_digest(out / "posters") == sources.POSTERS_DIGEST
    sources.write_poster_map(kept, out / "poster_map.tsv")
    assert filecmp.cmp(out / "poster_map.tsv", shared_data / "movielens-100k-mm" / "poster_map.tsv", shallow=False)

    # An ML-1M movie without a poster in the collection drops its items (both ML-100K ids of movie 1598).
    (mirror / sources.ml1m_poster(1598).path).unlink()
    few = [row for row in rows if row.ml1m_movie_id in (1, 1598)]
    shutil.rmtree(out / "posters")
    assert [row.ml100k_item_id for row in sources.fetch_posters(few, work, out, fetch)] == [1]
    assert [p.name for p in (out / "posters").iterdir()] == ["1.jpg"]


# --- the script ----------------------------------------------------------------------------------------------------


def test_script_downloads_from_a_mirror_and_reports_failures(shared_data, tmp_path, repo_root):
    script = repo_root / "workflow" / "scripts" / "download.py"
    mirror = mirror_source(tmp_path / "mirror", shared_data, "amazon2018-small-5core")
    dest, log = tmp_path / "resources" / "data" / "amazon2018-small-5core", tmp_path / "logs" / "download.log"
    run = [sys.executable, str(script), "--source", "amazon2018-small-5core", "--dest", str(dest), "--log", str(log)]
    ok = subprocess.run([*run, "--mirror", mirror], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert_same_files(dest, shared_data / "amazon2018-small-5core", SOURCES["amazon2018-small-5core"].files)
    assert "amazon2018-small-5core: 2 files in" in log.read_text()

    shutil.rmtree(dest)
    failed = subprocess.run(
        [*run, "--mirror", (tmp_path / "nowhere").as_uri(), "--retries", "0"], capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert "copy the shared data folder to <data_root>/amazon2018-small-5core" in log.read_text()
    assert not dest.exists()
