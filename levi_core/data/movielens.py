"""MovieLens 100K with the paper's genre shift (Sec. 5 and D.1).

Sources (option ``source``, default ``auto``):
  * ``files``: an ml-100k folder (``--data-dir``) with ``u.data`` (tab-separated user, movie,
    rating, timestamp), ``u.item`` (``|``-separated, ISO-8859-1/Latin-1, 5 fields + 19 genre
    flags), ``u.user`` (``|``: user, age, gender, occupation, zip), ``u.genre`` (``name|index``)
    and ``u.occupation``.
  * ``tfds``: an already prepared TFDS ``movielens/100k-ratings`` under ``--data-dir``,
    ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets`` (read with ``download=False``). With
    ``download=1`` and a reachable network TFDS downloads it first; offline, a DataError comes at
    once (no multi-minute TFDS retry) saying how to point at local files.
  * ``auto``: ``files`` when the folder has ``u.data``, else a prepared TFDS copy, else the error.
  * ``fixture=1``: the generated fixture of ``levi_core.data.fixtures`` (tests, smoke preset).
  * No ``--data-dir``: ``shared_local_dir()``, i.e. ``$LEVI_MOVIELENS_DIR`` or the project
    machines' ``<repo>/../shared/data/movielens_100k``, when it exists (then TFDS as above).
Both real sources give the same dataset: rows are put in (user id, movie id) order before
splitting, and TFDS's genre names are normalised like ml-100k's (``Children`` = ``Children's``).

Shift (option ``id_genres``, default ``action+comedy+drama+romance+thriller``, the paper's top 5):
  * ID = ratings of movies that have at least one ID genre.
  * OOD = one set ``ood/<genre>`` per other genre G: the ratings of movies that have G and no ID
    genre (so ID and OOD are mutually exclusive, as the paper requires). A movie with several
    non-ID genres (e.g. Animation and Children's) is counted in each of their sets: OOD sets can
    overlap each other (an example id then appears in several OOD splits and means the same
    rating), never the ID data.
  * A genre is kept only when its set has at least ``min_ood_ratings`` ratings (default 200).
    On the genuine files this gives exactly 12 OOD genres (Fantasy, 160, and unknown, 10, fall
    below); ratings of movies whose non-ID genres are all dropped are in no split
    (``info["excluded"]``).
ID split: a seeded (``split_seed``, default 0) uniform random partition of the ID ratings into
train / id_val / id_test with ``val_frac`` = ``test_frac`` = 0.1 (default) by rating, not by user.

Inputs:
  * large: ``text``, the paper's sentence: "When the user id is 138, the user occupation is
    doctor, the user zipcode is 53211, the movie title is One Flew Over the Cuckoo's Nest (1975),
    and the movie id is 357, what can be the user rating on this movie?:".
  * small (int32, vocabularies from the train split only, 0 = unknown and padding, so every OOD
    movie id maps to 0): exactly the paper's D.1 features, ``user_id``, ``age_bucket`` (TFDS's
    buckets 1, 18, 25, 35, 45, 50, 56), ``occupation``, ``zip_prefix`` (first
    ``zip_prefix_len`` = 3 characters), ``movie_id`` and the movie title as ``title_tokens``
    ([N, ``title_len`` = 12] padded lower-cased word ids). Options ``with_gender=1`` and
    ``with_genres=1`` add ``gender`` and ``genres`` ([N, ``genres_len`` = 6] padded genre ids);
    both are off by default: D.1 does not list them, and genre is the variable that defines the
    shift. ``vocab_sizes`` gives each table size.
Labels: float32 ratings 1-5; task regression, metric RMSE. Example ids ``u<user>_m<movie>``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from levi_core.data import common, fixtures
from levi_core.data.base import (Dataset, Split, register_dataset, register_preset_ids,
                                 register_shift)
from levi_core.data.movielens_files import (  # noqa: F401  (read_files, read_tfds: the raw sources)
    FILES, HOW, NAME, TFDS_NAME, canonical_genre, download_tfds, incomplete_folder_error, read_files,
    read_tfds,
)
from levi_core.errors import ConfigError, DataError

VERSION = "1"
ID_GENRES = "action+comedy+drama+romance+thriller"
AGE_THRESHOLDS = (18, 25, 35, 45, 50, 56)
SENTENCE = (
    "When the user id is {user}, the user occupation is {occupation}, the user zipcode is {zip}, "
    "the movie title is {title}, and the movie id is {movie}, what can be the user rating on "
    "this movie?:"
)


@dataclasses.dataclass(frozen=True)
class MovieLensOptions(common.DatasetOptions):
    """The options of a ``movielens`` dataset id (``movielens:key=value,...``); each field's
    annotation is how its text is read."""

    source: str = "auto"
    download: str = "auto"
    fixture: bool = False
    shift: str = "genre"
    time_cut: int = 0
    time_ood_frac: float = 0.2
    id_genres: str = ID_GENRES
    min_ood_ratings: int = 200
    val_frac: float = 0.1
    test_frac: float = 0.1
    split_seed: int = 0
    zip_prefix_len: int = 3
    genres_len: int = 6
    title_len: int = 12
    with_gender: bool = False
    with_genres: bool = False
    cache: bool = True
    cache_dir: str = ""


def shared_local_dir(repo_root: str | Path | None = None) -> Path | None:
    """The genuine ml-100k folder of this project's machines, if there is one:
    ``$LEVI_MOVIELENS_DIR``, else ``<repo root>/../shared/data/movielens_100k``
    (``common.shared_data_dir``). Never copied into the project."""
    from levi_core.data.common import shared_data_dir

    return shared_data_dir("movielens_100k", "u.data", "LEVI_MOVIELENS_DIR", repo_root)


def age_bucket(age: int) -> int:
    bucket = 1
    for t in AGE_THRESHOLDS:
        if age >= t:
            bucket = t
    return bucket


# ---------------------------------------------------------------- rows -> Dataset


def _genre_shift(rows: dict[str, list], opts: common.DatasetOptions):
    """The paper's shift: ID = movies with any ID genre; one OOD set per other genre."""
    n = len(rows["user"])
    id_genres = [canonical_genre(g) for g in common.parse_list(opts["id_genres"])]
    id_set = set(id_genres)
    is_id = np.array([bool(id_set.intersection(g)) for g in rows["genres"]])
    all_genres = sorted({g for gs in rows["genres"] for g in gs})
    unknown_id = sorted(id_set - set(all_genres))
    if unknown_id:
        raise DataError(f"{NAME}: id_genres {unknown_id} do not occur in the data; genres are {all_genres}")

    ood_counts: dict[str, int] = {}
    ood_index: dict[str, np.ndarray] = {}
    for g in all_genres:
        if g in id_set:
            continue
        idx = np.array([i for i in range(n) if not is_id[i] and g in rows["genres"][i]], dtype=np.int64)
        ood_counts[g] = len(idx)
        if len(idx) >= opts["min_ood_ratings"]:
            ood_index[g] = idx
    in_ood = np.zeros(n, bool)
    for idx in ood_index.values():
        in_ood[idx] = True

    id_idx = np.flatnonzero(is_id)
    tr, va, te = common.split_indices(len(id_idx), opts["val_frac"], opts["test_frac"], opts["split_seed"])
    parts = {"train": id_idx[tr], "id_val": id_idx[va], "id_test": id_idx[te]}
    for g, idx in ood_index.items():
        parts[f"ood/{g}"] = idx
    kept = sorted(ood_index)
    dropped = {g: c for g, c in ood_counts.items() if g not in ood_index}
    shift = (
        f"Genre (subpopulation) shift. ID: ratings of movies with any of {', '.join(id_genres)} "
        f"({int(is_id.sum())} ratings; train/id_val/id_test = seeded random split "
        f"{1 - opts['val_frac'] - opts['test_frac']:.2f}/{opts['val_frac']:.2f}/{opts['test_frac']:.2f}). "
        f"OOD: one set per other genre with at least {opts['min_ood_ratings']} ratings, each = the "
        f"ratings of movies with that genre and no ID genre ({len(kept)} sets: {', '.join(kept)}); "
        f"a movie with several non-ID genres counts in each of their sets. Below the threshold: "
        f"{', '.join(f'{g} ({c})' for g, c in sorted(dropped.items())) or 'none'}."
    )
    info = {
        "id_ratings": int(is_id.sum()),
        "ood_genre_counts": {g: ood_counts[g] for g in kept},
        "ood_genres_below_threshold": dropped,
        "excluded": int((~is_id & ~in_ood).sum()),
        "ood_union": int(in_ood.sum()),
    }
    return parts, shift, info


def _day(ts) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).date().isoformat()


def default_time_cut(timestamps, ood_frac: float) -> int:
    """The time that leaves the last ``ood_frac`` of the ratings after it: the timestamp of the
    rating at position n - round(n * ood_frac) in time order (ratings at that very second are
    OOD too, so OOD can be a few ratings above the fraction)."""
    if not 0 < ood_frac < 1:
        raise ConfigError(f"{NAME}: time_ood_frac={ood_frac} must be in (0, 1)")
    t = np.sort(np.asarray(timestamps, dtype=np.int64))
    k = len(t) - int(round(len(t) * ood_frac))
    return int(t[min(max(k, 1), len(t) - 1)])


def _time_shift(rows: dict[str, list], opts: common.DatasetOptions):
    """Beyond the paper: a temporal shift on the same ratings and inputs. ID = ratings before
    ``time_cut`` (unix seconds; default: the time that leaves the last ``time_ood_frac`` = 20% of
    the ratings after it), OOD ``ood/time`` = the ratings at or after it. A second genuine shift
    that runs offline (ml-100k's ratings span 1997-09-20 - 1998-04-22; the default cut is
    1998-03-07)."""
    t = np.asarray(rows["timestamp"], dtype=np.int64)
    cut = opts["time_cut"] or default_time_cut(t, opts["time_ood_frac"])
    is_id = t < cut
    if is_id.all() or not is_id.any():
        raise DataError(
            f"{NAME}: time_cut={cut} ({_day(cut)}) leaves no {'OOD' if is_id.all() else 'ID'} "
            f"ratings; the ratings span {_day(t.min())} - {_day(t.max())} (unix {t.min()} - "
            f"{t.max()}). Give a time inside that span, or leave time_cut out."
        )
    id_idx = np.flatnonzero(is_id)
    tr, va, te = common.split_indices(len(id_idx), opts["val_frac"], opts["test_frac"], opts["split_seed"])
    parts = {"train": id_idx[tr], "id_val": id_idx[va], "id_test": id_idx[te],
             "ood/time": np.flatnonzero(~is_id)}
    how = "given" if opts["time_cut"] else f"the time that leaves the last {opts['time_ood_frac']:.0%} of ratings after it"
    shift = (
        f"Time shift (beyond the paper). ID: ratings before {_day(cut)} (unix {cut}, {how}; "
        f"{int(is_id.sum())} ratings, {_day(t[is_id].min())} - {_day(t[is_id].max())}; "
        f"train/id_val/id_test = seeded random split "
        f"{1 - opts['val_frac'] - opts['test_frac']:.2f}/{opts['val_frac']:.2f}/{opts['test_frac']:.2f}). "
        f"OOD time: the {int((~is_id).sum())} ratings at or after it ({_day(t[~is_id].min())} - "
        f"{_day(t[~is_id].max())}). Same inputs as the genre shift."
    )
    info = {"id_ratings": int(is_id.sum()), "ood_ratings": int((~is_id).sum()), "time_cut": int(cut)}
    return parts, shift, info


def build(rows: dict[str, list], opts: common.DatasetOptions, sources: dict[str, str]) -> Dataset:
    common.count_build(NAME)
    def num(v: str):  # numeric ids in numeric order; anything else after them, as text
        return (0, int(v), "") if v.isdigit() else (1, 0, v)

    order = sorted(range(len(rows["user"])), key=lambda i: (num(rows["user"][i]), num(rows["movie"][i])))
    rows = {k: [v[i] for i in order] for k, v in rows.items()}
    n = len(order)
    if opts["shift"] == "genre":
        parts, shift, shift_info = _genre_shift(rows, opts)
    elif opts["shift"] == "time":
        parts, shift, shift_info = _time_shift(rows, opts)
    else:
        raise DataError(f"{NAME}: shift={opts['shift']!r}; use genre (the paper's) or time")

    zlen, glen, tlen = opts["zip_prefix_len"], opts["genres_len"], opts["title_len"]
    feats = {
        "user_id": rows["user"],
        "age_bucket": [str(age_bucket(a)) for a in rows["age"]],
        "occupation": rows["occupation"],
        "zip_prefix": [z[:zlen].upper() for z in rows["zip"]],
        "movie_id": rows["movie"],
    }
    if opts["with_gender"]:  # not one of D.1's features: an option, off by default
        feats["gender"] = rows["gender"]
    titles_tok = [common.tokenize(t) for t in rows["title"]]
    train = parts["train"]
    vocabs = {k: common.Vocab(v[i] for i in train) for k, v in feats.items()}
    genre_vocab = common.Vocab(g for i in train for g in rows["genres"][i])
    title_vocab = common.Vocab(t for i in train for t in titles_tok[i])

    splits = {}
    for role, idx in parts.items():
        small = {k: vocabs[k].encode([feats[k][i] for i in idx]) for k in feats}
        if opts["with_genres"]:  # genre defines the shift: never read unless asked for
            small["genres"] = genre_vocab.encode_lists([rows["genres"][i] for i in idx], glen)
        small["title_tokens"] = title_vocab.encode_lists([titles_tok[i] for i in idx], tlen)
        text = np.array(
            [
                SENTENCE.format(
                    user=rows["user"][i], occupation=rows["occupation"][i], zip=rows["zip"][i],
                    title=rows["title"][i], movie=rows["movie"][i],
                )
                for i in idx
            ]
        )
        splits[role] = Split(
            example_ids=np.array([f"u{rows['user'][i]}_m{rows['movie'][i]}" for i in idx]),
            labels=np.array([rows["rating"][i] for i in idx], dtype=np.float32),
            small=small,
            large={"text": text},
        )
    vocab_sizes = {k: len(v) for k, v in vocabs.items()}
    if opts["with_genres"]:
        vocab_sizes["genres"] = len(genre_vocab)
    vocab_sizes["title_tokens"] = len(title_vocab)
    stamps = np.asarray(rows["timestamp"], dtype=np.int64)
    info = {
        "options": opts.resolved(),
        "sources": sources,
        "num_ratings": n,
        **shift_info,
        "genre_vocab": genre_vocab.itos,
        "date_ranges": {role: [_day(stamps[idx].min()), _day(stamps[idx].max())]
                        for role, idx in parts.items() if len(idx)},
    }
    return Dataset(
        name=NAME, task="regression", metric="rmse", splits=splits, num_classes=None,
        vocab_sizes=vocab_sizes, shift=shift, info=info,
    )


@register_dataset(NAME, modality="text", entities={"user": "user_id", "item": "movie_id"},
                  batch_size=200, options=MovieLensOptions)
def load_movielens(options: dict[str, str], data_dir: str | None) -> Dataset:
    opts = MovieLensOptions.parse(NAME, options)
    download = common.parse_download(NAME, opts["download"])
    data_dir, source = common.resolve_source(NAME, opts, data_dir)
    if not data_dir and source in ("auto", "files"):
        shared = shared_local_dir()  # the project machines' genuine copy, if any
        data_dir = str(shared) if shared is not None else None
    folder = Path(data_dir) if data_dir else None
    if data_dir and not folder.is_dir():
        raise common.missing_files_error(NAME, data_dir, list(FILES), HOW)
    use_files = source == "files" or (
        source == "auto" and folder is not None and (folder / "u.data").is_file()
    )
    if source == "auto" and not use_files and folder is not None:
        if any((folder / f).exists() for f in FILES):  # an incomplete ml-100k folder
            use_files = True
    if use_files:
        if folder is None:
            raise common.missing_files_error(NAME, None, list(FILES), HOW)
        missing = [f for f in FILES if not (folder / f).is_file()]
        if len(missing) == len(FILES):  # source=files on a folder without any of them
            raise common.missing_files_error(NAME, str(folder), list(FILES), HOW)
        if missing:
            raise incomplete_folder_error(folder, missing)
        sources = {f: common.file_signature(folder / f) for f in FILES}
        return common.load_cached(
            NAME, VERSION, common.key_options(opts), sources,
            lambda: build(read_files(folder), opts, {"files": str(folder)}),
            opts["cache_dir"] or None, opts["cache"],
        )
    prepared = common.tfds_prepared_dir(data_dir, TFDS_NAME)
    if prepared is None:  # first use: download (when allowed and online) or the error
        prepared = download_tfds(data_dir, download)
    sources = {"tfds": str(prepared), "dataset_info": common.file_signature(prepared / "dataset_info.json")}
    return common.load_cached(
        NAME, VERSION, common.key_options(opts), sources,
        lambda: build(read_tfds(data_dir, False), opts, sources),
        opts["cache_dir"] or None, opts["cache"],
    )


# ---------------------------------------------------------------- fixture
ML_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]
ML_OCCUPATIONS = [
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
]


def _fixture(folder: Path, rng: np.random.Generator) -> None:
    """``u.data``, ``u.item`` (Latin-1, with accented titles), ``u.user``, ``u.genre``,
    ``u.occupation``, ``u.info``, as in ml-100k; 120 users, 150 movies, 4000 ratings; genres
    chosen so that some non-ID genres pass the 200-ratings threshold and some (fantasy,
    unknown) do not."""
    n_users, n_movies, n_ratings = 120, 150, 4000
    # Movie genre plans: ID movies (any top-5 genre, sometimes with a non-ID genre too), and
    # OOD-only movies with non-ID genres of different popularity.
    plans: list[list[str]] = []
    id_choices = ["Action", "Comedy", "Drama", "Romance", "Thriller"]
    for m in range(n_movies):
        if m < 90:
            gs = {id_choices[m % 5]}
            if m % 3 == 0:
                gs.add(["Adventure", "Crime", "War", "Sci-Fi"][m % 4])
        elif m < 108:
            gs = {"Horror"} if m % 3 else {"Horror", "Sci-Fi"}
        elif m < 122:
            gs = {"Sci-Fi"}
        elif m < 138:
            gs = {"Animation", "Children's"} if m % 2 else {"Children's"}
        elif m < 143:
            gs = {"Documentary"}
        elif m < 147:
            gs = {"Fantasy"}
        else:
            gs = {"unknown"}
        plans.append(sorted(gs, key=ML_GENRES.index))
    words = ["Night", "Return", "Story", "Love", "City", "Dark", "Man", "Star", "Café", "Amélie",
             "Señor", "Blue", "Road", "Last", "King", "Über"]
    with open(folder / "u.genre", "w", encoding="latin-1", newline="\n") as f:
        for i, g in enumerate(ML_GENRES):
            f.write(f"{g}|{i}\n")
        f.write("\n")
    (folder / "u.occupation").write_text("\n".join(ML_OCCUPATIONS) + "\n")
    with open(folder / "u.item", "wb") as f:
        for m in range(n_movies):
            title = " ".join(rng.choice(words, size=int(rng.integers(1, 4))))
            year = int(rng.integers(1930, 1999))
            flags = "|".join("1" if g in plans[m] else "0" for g in ML_GENRES)
            url = "http://us.imdb.com/M/title-exact?" + title.replace(" ", "%20")
            line = f"{m + 1}|{title} ({year})|01-Jan-{year}||{url}|{flags}\n"
            f.write(line.encode("latin-1"))
    with open(folder / "u.user", "w", encoding="latin-1", newline="\n") as f:
        for u in range(n_users):
            age = int(rng.integers(7, 74))
            gender = "MF"[int(rng.integers(0, 2))]
            occ = ML_OCCUPATIONS[int(rng.integers(0, len(ML_OCCUPATIONS)))]
            zipc = f"{int(rng.integers(0, 100000)):05d}" if u % 17 else "T8H1N"
            f.write(f"{u + 1}|{age}|{gender}|{occ}|{zipc}\n")
    pairs = rng.choice(n_users * n_movies, size=n_ratings, replace=False)
    with open(folder / "u.data", "w", newline="\n") as f:
        for p in pairs:
            u, m = divmod(int(p), n_movies)
            rating = int(np.clip(round(3.5 + rng.normal() + (0.5 if m < 90 else -0.5)), 1, 5))
            f.write(f"{u + 1}\t{m + 1}\t{rating}\t{874724710 + int(rng.integers(0, 20000000))}\n")
    (folder / "u.info").write_text(f"{n_users} users\n{n_movies} items\n{n_ratings} ratings\n")


# the stream is fixed per fixture name, so adding a fixture changes no other's files
fixtures.register_fixture(NAME, _fixture, stream=2)


# ---------------------------------------------------------------- tables and presets
register_shift("movielens", "MovieLens (genre)", "movielens", "ood/mean", "rmse")
# beyond the paper: a second genuine shift that runs offline (MovieLens by time)
register_shift("movielens_time", "MovieLens (time)", "movielens_time", "ood/time", "rmse")
# cpu: id_val, read after every epoch of every head, is a fixed stratified sample of 2,000
register_preset_ids("movielens", {"smoke": "movielens:fixture=1", "cpu": "movielens:max_val=2000"})
register_preset_ids("movielens_time", {"paper": "movielens:shift=time",
                                       "smoke": "movielens:shift=time,fixture=1",
                                       "cpu": "movielens:shift=time,max_val=2000"})
