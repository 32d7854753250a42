"""MovieLens 100K's raw sources read into rows: the ml-100k files, or TFDS's
``movielens/100k-ratings`` (prepared, or downloaded on first use when a network answers).
``levi_core.data.movielens`` turns the rows into the dataset with its shift."""

from __future__ import annotations

from pathlib import Path

from levi_core.data import common
from levi_core.errors import DataError

NAME = "movielens"
FILES = ("u.data", "u.item", "u.user", "u.genre", "u.occupation")
TFDS_NAME = "movielens/100k-ratings"
HOW = (
    "Put the ml-100k files (from https://grouplens.org/datasets/movielens/100k/, unzipped) in "
    "one folder and pass it as --data-dir (e.g. --data-dir ../shared/data/movielens_100k), or "
    "prepare TFDS 'movielens/100k-ratings' under --data-dir / $TFDS_DATA_DIR, or "
    "run on a machine with a network: TFDS then downloads it by itself (option download=auto, "
    "the default; download=1 insists, download=0 never downloads)."
)


def canonical_genre(name: str) -> str:
    """``Children's`` / ``Children`` -> ``children``; ``Sci-Fi`` -> ``sci-fi``; ``unknown``."""
    return name.strip().lower().replace("'s", "")




def _lines(path: Path, encoding: str = "latin-1") -> list[str]:
    try:
        return [line for line in path.read_bytes().decode(encoding).splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"{NAME}: cannot read {str(path)!r}: {e}") from None


def _corrupt(path: Path, lineno: int, line: str, what: str) -> DataError:
    return DataError(
        f"{NAME}: {str(path)!r} line {lineno} is not a valid {path.name} row ({what}): {line[:80]!r}. "
        f"The file looks corrupt or is not the original ml-100k file; replace it with the original "
        f"from https://grouplens.org/datasets/movielens/100k/."
    )


def incomplete_folder_error(folder: Path, missing: list[str]) -> DataError:
    """An ml-100k folder that has some of its files: the message names only the missing ones
    (a list of all five would hide which one was left behind)."""
    names = ", ".join(missing)
    it, verb = ("it", "is") if len(missing) == 1 else ("them", "are")
    return DataError(
        f"{NAME}: {names} {verb} missing from {str(folder)!r} (the other ml-100k files are "
        f"there). Copy {it} from the same unzipped ml-100k download "
        f"(https://grouplens.org/datasets/movielens/100k/) into that folder and run again."
    )


def read_files(folder: Path) -> dict[str, list]:
    """Parse an ml-100k folder into row lists (one entry per rating, in u.data order)."""
    missing = [f for f in FILES if not (folder / f).is_file()]
    if len(missing) == len(FILES):
        raise common.missing_files_error(NAME, str(folder), list(FILES), HOW)
    if missing:
        raise incomplete_folder_error(folder, missing)
    genre_names: dict[int, str] = {}
    for i, line in enumerate(_lines(folder / "u.genre"), 1):
        parts = line.split("|")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise _corrupt(folder / "u.genre", i, line, "expected 'name|index'")
        genre_names[int(parts[1])] = canonical_genre(parts[0])
    n_genres = len(genre_names)
    if sorted(genre_names) != list(range(n_genres)):
        raise _corrupt(folder / "u.genre", 1, "", "genre indices are not 0..n-1")
    occupations = set(_lines(folder / "u.occupation"))

    movies: dict[str, tuple[str, list[str]]] = {}
    for i, line in enumerate(_lines(folder / "u.item"), 1):
        parts = line.split("|")
        if len(parts) != 5 + n_genres or not all(p in ("0", "1") for p in parts[5:]):
            raise _corrupt(folder / "u.item", i, line, f"expected {5 + n_genres} '|' fields")
        flags = parts[5:]
        movies[parts[0]] = (parts[1], [genre_names[j] for j, f in enumerate(flags) if f == "1"])
    users: dict[str, tuple[int, str, str, str]] = {}
    for i, line in enumerate(_lines(folder / "u.user"), 1):
        parts = line.split("|")
        if len(parts) != 5 or not parts[1].isdigit():
            raise _corrupt(folder / "u.user", i, line, "expected 'user|age|gender|occupation|zip'")
        if occupations and parts[3] not in occupations:
            raise _corrupt(folder / "u.user", i, line, "occupation not listed in u.occupation")
        users[parts[0]] = (int(parts[1]), parts[2], parts[3], parts[4])

    rows: dict[str, list] = {k: [] for k in ("user", "movie", "rating", "timestamp", "age", "gender", "occupation", "zip", "title", "genres")}
    for i, line in enumerate(_lines(folder / "u.data"), 1):
        parts = line.split("\t")
        if len(parts) != 4:
            raise _corrupt(folder / "u.data", i, line, "expected 4 tab-separated fields")
        user, movie, rating, ts = parts
        if user not in users or movie not in movies:
            raise _corrupt(folder / "u.data", i, line, "user or movie id not in u.user / u.item")
        try:
            r = float(rating)
            t = int(ts)
        except ValueError:
            raise _corrupt(folder / "u.data", i, line, "rating or timestamp not a number") from None
        age, gender, occupation, zipc = users[user]
        title, genres = movies[movie]
        for k, v in zip(rows, (user, movie, r, t, age, gender, occupation, zipc, title, genres)):
            rows[k].append(v)
    if not rows["user"]:
        raise DataError(f"{NAME}: {str(folder / 'u.data')!r} has no ratings. {HOW}")
    return rows


HOST = "files.grouplens.org"


def download_tfds(data_dir: str | None, mode: str) -> Path:
    """Download and prepare TFDS ``movielens/100k-ratings`` (5 MB; TFDS shows its progress
    bars) into ``data_dir`` (or ``$TFDS_DATA_DIR`` / ``~/tensorflow_datasets``), and return the
    prepared folder. ``mode`` is the ``download`` option: with ``0``, or with no network (probed
    for at most 2 s, so an offline machine fails in seconds instead of in TFDS's minutes of
    retries), nothing is tried and the error says how to point at local files."""
    expected = list(FILES) + [f"or a prepared TFDS {TFDS_NAME}"]
    if mode == "0":
        raise common.missing_files_error(NAME, data_dir, expected, HOW)
    if not common.can_download(HOST):
        why = (f"${common.OFFLINE_ENV} is set" if common.offline_forced()
               else f"{HOST} is unreachable")
        if mode == "1":
            raise DataError(f"{NAME}: download=1 was asked but there is no network ({why}). {HOW}")
        raise common.missing_files_error(
            NAME, data_dir, expected, f"{HOW} (No download was tried: {why}.)")
    common.quiet_tensorflow()
    import tensorflow_datasets as tfds

    try:
        tfds.builder(TFDS_NAME, data_dir=data_dir).download_and_prepare()
    except Exception as e:  # network drop, disk full, changed URL: say what failed and the fix
        raise DataError(f"{NAME}: downloading TFDS {TFDS_NAME} failed ({type(e).__name__}: {e}). {HOW}") from None
    prepared = common.tfds_prepared_dir(data_dir, TFDS_NAME)
    if prepared is None:
        raise DataError(f"{NAME}: TFDS reported success but no prepared {TFDS_NAME} was found. {HOW}")
    return prepared


def read_tfds(data_dir: str | None, download: bool = False) -> dict[str, list]:
    """Read TFDS ``movielens/100k-ratings`` (prepared; downloads only when asked and online)."""
    prepared = common.tfds_prepared_dir(data_dir, TFDS_NAME)
    if prepared is None:
        prepared = download_tfds(data_dir, "1" if download else "0")
    common.quiet_tensorflow()
    import tensorflow_datasets as tfds

    ds, info = tfds.load(TFDS_NAME, split="train", data_dir=str(prepared.parents[2]), download=False, with_info=True)
    genre_names = [canonical_genre(n) for n in info.features["movie_genres"].feature.names]
    rows: dict[str, list] = {k: [] for k in ("user", "movie", "rating", "timestamp", "age", "gender", "occupation", "zip", "title", "genres")}
    for ex in tfds.as_numpy(ds):
        rows["user"].append(ex["user_id"].decode())
        rows["movie"].append(ex["movie_id"].decode())
        rows["rating"].append(float(ex["user_rating"]))
        rows["timestamp"].append(int(ex["timestamp"]))
        rows["age"].append(int(ex["raw_user_age"]))
        rows["gender"].append("M" if bool(ex["user_gender"]) else "F")
        rows["occupation"].append(ex["user_occupation_text"].decode())
        rows["zip"].append(ex["user_zip_code"].decode())
        rows["title"].append(ex["movie_title"].decode("utf-8"))
        rows["genres"].append([genre_names[g] for g in ex["movie_genres"]])
    return rows
