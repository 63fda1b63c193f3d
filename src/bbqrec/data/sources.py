"""Where each dataset source comes from: its public origin, pinned by commit and sha256, and the recipes that
rebuild its derived files.

A source is one folder under `data_root` (e.g. `amazon-scientific`). Its files are either copied byte-identical
from an origin file (`Source.files`) or rebuilt from origin files by a recipe (`Source.recipes`), the same way the
copy in the shared data folder was built (each folder's SOURCE.md says how). Every sha256 below is the hash of the
file as it is in the shared data folder; `bbqrec.data.download` checks each download and each rebuilt file against
it, so a source fetched from its origin is byte-identical to the shared copy.

`movielens-100k` comes from the recbole 1.2.1 wheel on PyPI, the origin its SOURCE.md names, rather than from the
RecBole GitHub repository: PyPI never lets a file be replaced under the same name, the wheel's sha256 is recorded in
SOURCE.md, while no commit of the repository is. The wheel's download URL is looked up in PyPI's standard index API
(PEP 691, what pip uses) instead of being hard-coded.
"""

from __future__ import annotations

import codecs
import pickle
import re
import shutil
import unicodedata
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol

from bbqrec.io import InputError

GITHUB_RAW = "https://raw.githubusercontent.com/"
PYPI_SIMPLE = "https://pypi.org/simple/"


@dataclass(frozen=True)
class Remote:
    """One file at its public origin.

    `path` is the file's place under the origin's base URL and also under a mirror root, so that a mirror is a plain
    copy of the origin layout: GitHub files as `<owner>/<repo>/<commit>/<path>` (under `GITHUB_RAW`), PyPI files as
    `pypi/<project>/<filename>` (their origin URL is looked up in PyPI's index).
    """

    path: str
    sha256: str | None  # None: not pinned; checked through the files rebuilt from it
    pypi_project: str | None = None

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def github(origin: tuple[str, str], path: str, sha256: str | None) -> Remote:
    """A file of a GitHub repository at a pinned commit; `origin` is (owner/repo, commit)."""
    repo, commit = origin
    return Remote(f"{repo}/{commit}/{path}", sha256)


def github_folder(origin: tuple[str, str], folder: str, hashes: dict[str, str]) -> dict[str, Remote]:
    """The files `hashes` names (name -> sha256) in one folder of a GitHub repository."""
    return {name: github(origin, f"{folder}/{name}".lstrip("/"), sha) for name, sha in hashes.items()}


def pypi(project: str, filename: str, sha256: str) -> Remote:
    """A distribution file published on PyPI."""
    return Remote(f"pypi/{project}/{filename}", sha256, pypi_project=project)


class Fetch(Protocol):
    """How a recipe downloads more origin files: `bbqrec.data.download.Fetcher`."""

    def __call__(self, remotes: Mapping[str, Remote], folder: Path, missing_ok: bool = False) -> set[str]:
        """Download each remote to `folder/<name>`; return the names the origin lacks (only with `missing_ok`)."""
        ...


@dataclass(frozen=True)
class Recipe:
    """Files rebuilt from origin files: `build(work, out, fetch)` reads `inputs` (already downloaded to
    `work/<name>`) and the files already in `out`, and writes `outputs` into `out`."""

    inputs: dict[str, Remote]
    build: Callable[[Path, Path, Fetch], None]
    outputs: dict[str, str]  # path in the source folder -> sha256 (a folder: `download.tree_digest`)


@dataclass(frozen=True)
class Source:
    name: str
    files: dict[str, Remote]  # name in the source folder -> origin file, copied byte-identical
    recipes: tuple[Recipe, ...] = field(default=())


# --- origin files ------------------------------------------------------------------------------------------------

# (owner/repo, commit) of each origin repository, as the sources' SOURCE.md name them.
COWPIREC = ("ysh-1998/CoWPiRec", "db47560c2364650d22afc77080717287daec5079")
DECOREC = ("KIKIENAO/decorec", "3d93ec5812fa7267eb7be368fdddd9117f066d21")
S3REC = ("aHuiWang/CIKM2020-S3Rec", "49a890dcb516c9ed3126564495234ea74d5cd566")
IDGENREC = ("agiresearch/IDGenRec", "a297185aa5b6cd6de9dcf8b8182052ee8e0b3261")
ULMREC = ("Palpitate18/ULMRec", "8bbfec3601ce6d9000a8ba2db10f04f5a5de8294")
AMAZON_SEARCH_ENGINE = ("Alex-Shen1121/AmazonSearchEngine", "643850e1364b20069f8bd6eaa271e81330f68787")
MOVIELENS_DETAILS = ("manfredmichael/movielens-details", "deca05a31f7d5a53a75a3ac335d4dfc5e9d9ea63")
ML1M_POSTERS = ("liangfgithub/liangfgithub.github.io", "518cc7193567b1e9ec1a2f5ac4fc237c5f884cf8")

S3REC_FILES = github_folder(
    S3REC,
    "data",
    {
        "Beauty.txt": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
        "Beauty_item2attributes.json": "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
        "Sports_and_Outdoors.txt": "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
        "Sports_and_Outdoors_item2attributes.json": "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b",
        "Toys_and_Games.txt": "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
        "Toys_and_Games_item2attributes.json": "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0",
    },
)

# S3-Rec file name -> IDGenRec folder name, for the three Amazon 2014 5-core datasets.
S3REC_TO_IDGENREC = {"Beauty": "Beauty", "Sports_and_Outdoors": "Sports", "Toys_and_Games": "Toys"}

ULMREC_BEAUTY_PICKLE = github(
    ULMREC,
    "data/preprocessed/beauty_min_rating0-min_uc5-min_sc5/dataset.pkl",
    "ae6186269f571b068bf3e30d9939bebd6d662cef99b2ee0da5a124233f91fc94",
)

RECBOLE_WHEEL = pypi(
    "recbole", "recbole-1.2.1-py3-none-any.whl", "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
)
RECBOLE_ML100K = "recbole/dataset_example/ml-100k/"

# ML-1M movies.dat has no recorded hash: it is checked through poster_map.tsv, which is rebuilt from it.
ML1M_MOVIES = github(ML1M_POSTERS, "MovieData/movies.dat", None)


def ml1m_poster(ml1m_movie_id: int) -> Remote:
    """The ML-1M poster collection's file for one movie (posters are checked together: see `POSTERS_DIGEST`)."""
    return github(ML1M_POSTERS, f"MovieImages/{ml1m_movie_id}.jpg", None)


# --- recipes: amazon-s3rec-asin ----------------------------------------------------------------------------------


def derive_s3rec_maps(s3rec_text: str, asin_text: str, label: str) -> tuple[dict[int, str], dict[int, str]]:
    """Map S3-Rec integer ids to ASINs / reviewerIDs, given the same users' sequences written with real ids.

    Line n of both files is the same user with the same number of items. The candidates of an item are the ASINs
    shared by every user whose line holds it; an item left with one candidate fixes it, and fixed ASINs are
    removed from the other items' candidates until nothing changes. Items still ambiguous (bought always
    together) take the ASIN at their position in the line, which must be the same on every line. The result must
    be a bijection under which every user's item set equals their ASIN set; otherwise an `InputError`.
    Returns (item id -> ASIN, user id -> reviewerID).
    """
    s3rec = [line.split() for line in s3rec_text.splitlines()]
    asins = [line.split() for line in asin_text.splitlines()]
    if len(s3rec) != len(asins):
        raise InputError(f"{label}: {len(s3rec)} S3-Rec lines but {len(asins)} ASIN lines; expected the same users")
    for n, (ids, real) in enumerate(zip(s3rec, asins), start=1):
        if len(ids) != len(real) or len(ids) < 2:
            raise InputError(f"{label}: line {n}: {len(ids) - 1} S3-Rec items but {len(real) - 1} ASINs")
    user_map = {int(ids[0]): real[0] for ids, real in zip(s3rec, asins)}

    candidates: dict[str, set[str]] = {}
    for ids, real in zip(s3rec, asins):
        line_asins = set(real[1:])
        for item in ids[1:]:
            if item in candidates:
                candidates[item] &= line_asins
            else:
                candidates[item] = set(line_asins)
    item_map = _eliminate(candidates, label)

    unresolved = candidates.keys() - item_map.keys()
    if unresolved:
        at_position: dict[str, set[str]] = defaultdict(set)
        for ids, real in zip(s3rec, asins):
            for item, asin in zip(ids[1:], real[1:]):
                if item in unresolved:
                    at_position[item].add(asin)
        for item in sorted(unresolved, key=int):
            if len(at_position[item]) != 1 or not at_position[item] <= candidates[item]:
                raise InputError(
                    f"{label}: S3-Rec item {item} is ambiguous between {sorted(candidates[item])} "
                    f"and its positions disagree ({sorted(at_position[item])})"
                )
            item_map[item] = next(iter(at_position[item]))

    if len(set(item_map.values())) != len(item_map):
        raise InputError(f"{label}: the derived item map is not one-to-one")
    for n, (ids, real) in enumerate(zip(s3rec, asins), start=1):
        if {item_map[i] for i in ids[1:]} != set(real[1:]):
            raise InputError(f"{label}: line {n}: the mapped S3-Rec items differ from the line's ASINs")
    return {int(k): v for k, v in item_map.items()}, user_map


def _eliminate(candidates: dict[str, set[str]], label: str) -> dict[str, str]:
    """Fix items with a single candidate and remove their ASIN from the others, until nothing changes."""
    fixed: dict[str, str] = {}
    taken: set[str] = set()
    progress = True
    while progress:
        progress = False
        for item, options in candidates.items():
            if item in fixed:
                continue
            options -= taken
            if not options:
                raise InputError(f"{label}: S3-Rec item {item} has no ASIN shared by all its users")
            if len(options) == 1:
                fixed[item] = next(iter(options))
                taken.add(fixed[item])
                progress = True
    return fixed


def write_tsv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    """Tab-separated, header first, `\\n` line ends, no quoting (the shared TSVs are written this way)."""
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _build_s3rec_maps(work: Path, out: Path, fetch: Fetch) -> None:
    for s3name, idgname in S3REC_TO_IDGENREC.items():
        item_map, user_map = derive_s3rec_maps(
            (work / f"{s3name}.txt").read_text(),
            (out / f"{idgname}.user_sequence.txt").read_text(),
            label=f"{s3name}.txt vs {idgname}.user_sequence.txt",
        )
        write_tsv(out / f"{s3name}_item_map.tsv", ("s3rec_item_id", "asin"), sorted(item_map.items()))
        write_tsv(out / f"{s3name}_user_map.tsv", ("s3rec_user_id", "reviewerID"), sorted(user_map.items()))


class _Placeholder:
    """Stands in for the numpy scalars of a pickle's train/val/test lists, which are not used."""

    def __init__(self, *args):
        pass

    def __setstate__(self, state):
        pass


class _LlamaRecUnpickler(pickle.Unpickler):
    # A pickle can run arbitrary code; this one may only name numpy's scalar reconstructors, replaced here, and
    # the bytes encoder of protocol-2 pickles.
    _NUMPY = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}

    def __init__(self, file, label: str):
        super().__init__(file)
        self.label = label

    def find_class(self, module: str, name: str):
        if (module, name) in self._NUMPY:
            return _Placeholder
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        raise InputError(f"{self.label}: unexpected object {module}.{name} in the pickle (expected dicts and lists)")


def load_llamarec_pickle(path: Path) -> dict:
    """The LlamaRec-style `dataset.pkl` (keys train/val/test/meta/umap/smap), read without running its code."""
    with open(path, "rb") as fh:
        data = _LlamaRecUnpickler(fh, str(path)).load()
    if not isinstance(data, dict) or not {"meta", "smap"} <= data.keys():
        raise InputError(f"{path}: expected a dict with keys 'meta' and 'smap'")
    return data


def beauty_titles(item_map: list[tuple[int, str]], smap: Mapping, meta: Mapping) -> list[tuple[int, str, str]]:
    """(s3rec_item_id, asin, title) for the mapped items that the pickle titles (`smap`: ASIN -> int,
    `meta`: int -> title); whitespace runs (tabs, newlines) in a title become single spaces."""
    asin_to_int = {str(asin): i for asin, i in smap.items()}  # str: pandas may have read all-digit ASINs as ints
    rows = []
    for item_id, asin in item_map:
        title = meta.get(asin_to_int.get(asin))
        if title:
            rows.append((item_id, asin, " ".join(title.split())))
    return rows


def read_tsv_pairs(path: Path) -> list[tuple[int, str]]:
    """The (int, str) rows of a two-column TSV with a header, e.g. `<S3Name>_item_map.tsv`."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    rows = []
    for n, line in enumerate(lines, start=2):
        key, sep, value = line.partition("\t")
        if not sep or not key.isdigit():
            raise InputError(f"{path}: line {n}: expected '<int>\\t<value>', got {line!r}")
        rows.append((int(key), value))
    return rows


def _build_beauty_titles(work: Path, out: Path, fetch: Fetch) -> None:
    data = load_llamarec_pickle(work / "dataset.pkl")
    rows = beauty_titles(read_tsv_pairs(out / "Beauty_item_map.tsv"), data["smap"], data["meta"])
    write_tsv(out / "Beauty_item_titles.tsv", ("s3rec_item_id", "asin", "title"), rows)


# --- recipes: movielens-100k and movielens-100k-mm ---------------------------------------------------------------

ML100K_FILES = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}


def extract_wheel_files(wheel: Path, folder: str, names: list[str], out: Path) -> None:
    """Copy `folder/<name>` out of a wheel (a zip file) to `out/<name>`."""
    with zipfile.ZipFile(wheel) as archive:
        for name in names:
            try:
                data = archive.read(folder + name)
            except KeyError:
                raise InputError(f"{wheel}: has no {folder + name}") from None
            (out / name).write_bytes(data)


def _build_ml100k(work: Path, out: Path, fetch: Fetch) -> None:
    extract_wheel_files(work / RECBOLE_WHEEL.filename, RECBOLE_ML100K, list(ML100K_FILES), out)


@dataclass(frozen=True)
class PosterMatch:
    """One row of poster_map.tsv: a MovieLens-100K item and the ML-1M movie whose poster it gets."""

    ml100k_item_id: int
    ml100k_title: str
    ml100k_year: str
    ml1m_movie_id: int
    match_method: str  # exact_title_year | normalized_title_year

    @property
    def poster_file(self) -> str:
        return f"posters/{self.ml100k_item_id}.jpg"


POSTER_MAP_HEADER = ("ml100k_item_id", "ml100k_title", "ml100k_year", "ml1m_movie_id", "match_method", "poster_file")


def read_ml100k_items(text: str, label: str) -> list[tuple[int, str, str]]:
    """(item_id, title, year) from RecBole's `ml-100k.item` (title and year as written, e.g. 'Toy Story', '1995')."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("item_id:token\tmovie_title:token_seq\trelease_year:token"):
        raise InputError(f"{label}: line 1: expected the RecBole header 'item_id:token  movie_title:token_seq ...'")
    items = []
    for n, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) < 3 or not fields[0].isdigit():
            raise InputError(f"{label}: line {n}: expected 'item_id<TAB>title<TAB>year...', got {line!r}")
        items.append((int(fields[0]), fields[1], fields[2]))
    return items


_ML1M_TITLE = re.compile(r"^(?P<title>.*) \((?P<year>\d{4})\)$")


def read_ml1m_movies(raw: bytes, label: str) -> list[tuple[int, str, str]]:
    """(movie_id, title without year, year) from ML-1M `movies.dat` (`id::Title (YYYY)::genres`, Latin-1 in the
    GroupLens release; UTF-8 copies are read as UTF-8)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    movies = []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split("::")
        title = _ML1M_TITLE.match(fields[1]) if len(fields) == 3 and fields[0].isdigit() else None
        if title is None:
            raise InputError(f"{label}: line {n}: expected 'id::Title (YYYY)::genres', got {line!r}")
        movies.append((int(fields[0]), title["title"], title["year"]))
    return movies


def normalise_title(title: str) -> str:
    """Lower case without accents; every run of other characters than a-z and 0-9 becomes one space."""
    decomposed = unicodedata.normalize("NFKD", title)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return re.sub(r"[^a-z0-9]+", " ", plain).strip()


def match_ml1m(items: list[tuple[int, str, str]], movies: list[tuple[int, str, str]]) -> list[PosterMatch]:
    """Match MovieLens-100K items to ML-1M movies: the same lower-cased title and year, else the same normalised
    title (`normalise_title`) and year with a single candidate. Unmatched items are left out, not guessed."""
    exact: dict[tuple[str, str], list[int]] = defaultdict(list)
    normalised: dict[tuple[str, str], list[int]] = defaultdict(list)
    for movie_id, title, year in movies:
        exact[title.lower(), year].append(movie_id)
        normalised[normalise_title(title), year].append(movie_id)
    matches = []
    for item_id, title, year in items:
        for method, ids in (
            ("exact_title_year", exact.get((title.lower(), year), [])),
            ("normalized_title_year", normalised.get((normalise_title(title), year), [])),
        ):
            if len(ids) == 1:
                matches.append(PosterMatch(item_id, title, year, ids[0], method))
                break
    return matches


def fetch_posters(matches: list[PosterMatch], work: Path, out: Path, fetch: Fetch) -> list[PosterMatch]:
    """Download the ML-1M poster of every match (once per ML-1M movie) and store it as `out/posters/<ml100k id>.jpg`.
    Returns the matches whose poster exists in the collection."""
    remotes = {f"{m}.jpg": ml1m_poster(m) for m in sorted({match.ml1m_movie_id for match in matches})}
    (work / "MovieImages").mkdir(exist_ok=True)
    missing = fetch(remotes, work / "MovieImages", missing_ok=True)
    kept = [match for match in matches if f"{match.ml1m_movie_id}.jpg" not in missing]
    (out / "posters").mkdir(exist_ok=True)
    for match in kept:
        shutil.copyfile(work / "MovieImages" / f"{match.ml1m_movie_id}.jpg", out / match.poster_file)
    return kept


def write_poster_map(matches: list[PosterMatch], path: Path) -> None:
    rows = [
        (m.ml100k_item_id, m.ml100k_title, m.ml100k_year, m.ml1m_movie_id, m.match_method, m.poster_file)
        for m in sorted(matches, key=lambda m: m.ml100k_item_id)
    ]
    write_tsv(path, POSTER_MAP_HEADER, rows)


def _build_posters(work: Path, out: Path, fetch: Fetch) -> None:
    extract_wheel_files(work / RECBOLE_WHEEL.filename, RECBOLE_ML100K, ["ml-100k.item"], work)
    items = read_ml100k_items((work / "ml-100k.item").read_text(encoding="utf-8"), "ml-100k.item")
    movies = read_ml1m_movies((work / "movies.dat").read_bytes(), "ML-1M movies.dat")
    kept = fetch_posters(match_ml1m(items, movies), work, out, fetch)
    write_poster_map(kept, out / "poster_map.tsv")


# sha256 of the sorted `sha256sum` listing of movielens-100k-mm/posters/ (1,621 files): see download.tree_digest.
POSTERS_DIGEST = "90ab52baf3e2e9aa506edd1a8ccc7f8ba103bc4442f2a494f93d639a7fee063f"


# --- the manifest: sha256 of each file as it is in the shared data folder ---------------------------------------

SCIENTIFIC_FILES = {
    "Scientific.item2index": "896ab1017508cf20834d3d0537da9f8f624324223a835af272a98ba16f8c087a",
    "Scientific.test.inter": "546da7e5f44002b4518d7fd58066684bc09613f76c240914e16976d57cfe7083",
    "Scientific.text": "95887e6bda76e54f59b71b566320520d5da74e21d3b6ff8f20bfb6e8e84aa831",
    "Scientific.train.inter": "7284f6489d956fa20c9b64ffc84569264320edba5c3bc2fcb22db2ea083a1163",
    "Scientific.user2index": "f0162b1a3a0c6b7e816f86208e7b36f65d6787923126f9558fbc6d368e4c4974",
    "Scientific.valid.inter": "5f37c84d3b54617cdc46638c89dfe8741c7efc4987acd5eb64de2cbd4311f46c",
}
SCIENTIFIC_MM_FILES = {
    "Scientific.feat1CLS": "45fc2f23e1cd621f67ffc8584aa0cc30adae6eb5d7a354f79a2f93e6b94f8ae2",
    "Scientific.feat3CLS": "20cb8a751cbc1a84c785bc4acdd13a3f1003d4be0c3c8d4034cd1de834b43389",
    "Scientific.item2index": "e689059637092e6dfaf6161ab71c5a3e54d96dc6a401a285c534cfc41516c022",
    "Scientific.test.inter": "46077666a7e26f6f3a0b8929c15b66af83b4a21859fb0a6c25692403fd703611",
    "Scientific.text": "2989b83daab4624c7adc289d17baea0d09f85c20545e1635f7614926ae489167",
    "Scientific.train.inter": "ad7a8cc23499cdbc3a0ba3650a438f946da433131e786b4ce4dfeae1c5590c5f",
    "Scientific.user2index": "417271f5886f37761b9e7e0da8e80e189aac034922491ade408101bc31270642",
    "Scientific.valid.inter": "46b3f988b4f12ed05de4ba518e48744d7680eda42146138ffb416445d191cafb",
}
IDGENREC_SEQUENCES = {  # IDGenRec folder -> sha256 of its user_sequence.txt
    "Beauty": "47197cbee7bdc1896926e10d96b807dce0aecb9a1f0c2ccc887c21090237c9b7",
    "Sports": "771ce98798c545aab4b48b30ecc1b7ebd045c41d287b87f07abbd773e11b6042",
    "Toys": "cf2dfd59149a603b8fb3e84bc3c2fc21df0b3332ce62ac4453133fb730f6adf3",
}
S3REC_ASIN_MAPS = {
    "Beauty_item_map.tsv": "d2db7981419c30b2f574cc1766d2e2bd1c4726f6fa0da063cda371add62e01a8",
    "Beauty_user_map.tsv": "d71ee8320fc38bd6bd4d8f77a105c9d50d8acf0e88287ea38d05cf7d9e582491",
    "Sports_and_Outdoors_item_map.tsv": "ca67851def1523f859c860e50c962983fbfe2aa2551994f312e11104a251eabf",
    "Sports_and_Outdoors_user_map.tsv": "b3e668157a820cd43695535a2074027bb1da1c3a78ce4fcf7b406f860e0cf07c",
    "Toys_and_Games_item_map.tsv": "44ddd472af972a47b60891697277f87fbb57b2f9db417d9f5c3f36df1df3c098",
    "Toys_and_Games_user_map.tsv": "40a0d3b109af5eb491ed7399be1f3dc31a0577ee97c47fc75fc7724dad5b89d7",
}
BEAUTY_TITLES = {"Beauty_item_titles.tsv": "c3612f7ac92476c2fd7efe21f3e853dbed3a4cbd96e836708870a1227e4be361"}
ML_DETAILS_FILES = {"movielens100k_details.json": "91797362fe45e38b385e817b81eb53604af7f20596b50a594b6f07ca66c102c5"}
ML_POSTERS = {
    "poster_map.tsv": "45147779d643330acdbaa0d2ef4940a77d5dbec8eaf90bcce73d13d010b00ef1",
    "posters": POSTERS_DIGEST,
}
GIFT_CARDS_FILES = {
    "Gift_Cards_5.json.gz": "41e1f0e50d3c1c9d7d949fb6315944c8bde51ea6b7429a29fdd0d02cbc07ef25",
    "meta_Gift_Cards.json.gz": "24ac90af3eb47d9c04458a61a44a76a882419190e027c6ec14ee0a993549c34a",
}

SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source("amazon-scientific", github_folder(COWPIREC, "dataset/Scientific", SCIENTIFIC_FILES)),
        Source("amazon-scientific-mm", github_folder(DECOREC, "dataset/downstream/Scientific", SCIENTIFIC_MM_FILES)),
        Source("amazon-s3rec", S3REC_FILES),
        Source(
            "amazon-s3rec-asin",
            {
                f"{name}.user_sequence.txt": github(IDGENREC, f"rec_datasets/{name}/user_sequence.txt", sha)
                for name, sha in IDGENREC_SEQUENCES.items()
            },
            recipes=(
                Recipe(
                    {f"{name}.txt": S3REC_FILES[f"{name}.txt"] for name in S3REC_TO_IDGENREC},
                    _build_s3rec_maps,
                    S3REC_ASIN_MAPS,
                ),
                Recipe({"dataset.pkl": ULMREC_BEAUTY_PICKLE}, _build_beauty_titles, BEAUTY_TITLES),
            ),
        ),
        Source(
            "movielens-100k",
            {},
            recipes=(Recipe({RECBOLE_WHEEL.filename: RECBOLE_WHEEL}, _build_ml100k, ML100K_FILES),),
        ),
        Source(
            "movielens-100k-mm",
            github_folder(MOVIELENS_DETAILS, "", ML_DETAILS_FILES),
            recipes=(
                Recipe({RECBOLE_WHEEL.filename: RECBOLE_WHEEL, "movies.dat": ML1M_MOVIES}, _build_posters, ML_POSTERS),
            ),
        ),
        Source("amazon2018-small-5core", github_folder(AMAZON_SEARCH_ENGINE, "rawdata", GIFT_CARDS_FILES)),
    )
}
