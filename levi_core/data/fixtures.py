"""Small generated stand-ins for each dataset, in that dataset's exact raw format.

The real datasets may not be committed (their licenses forbid redistribution). These fixtures
exercise the whole path from raw files to arrays offline, in seconds: the tests use them, and
the ``smoke`` preset loads them with the option ``fixture=1`` (e.g. ``movielens:fixture=1``) or
``fixture_dataset(name)``.

``write_fixture(name, folder, seed=0) -> folder`` writes:
  * ``movielens``: ``u.data``, ``u.item`` (Latin-1, with accented titles), ``u.user``,
    ``u.genre``, ``u.occupation``, ``u.info``, as in ml-100k; 120 users, 150 movies, 4000
    ratings; genres chosen so that some non-ID genres pass the 200-ratings threshold and some
    (fantasy, unknown) do not.
  * ``amazon``: ``amazon_reviews_us_<Category>_v1_00.tsv(.gz)`` with the original 15-column
    header (Books in three files v1_00 (gz), v1_01, v1_02; Books dates 2000-2006; the 7 product
    categories).
  * ``amazon2023``: the Amazon Reviews 2023 files, ``<C>.csv[.gz]`` (rating_only, header
    ``user_id,parent_asin,rating,timestamp``, ms) and ``meta_<C>.jsonl[.gz]`` for Books
    (2007-2016, 700 ratings) and the 6 categories the product roles read, a few hundred ratings
    each, with the real files' heterogeneous meta fields and category paths (loaded by the
    ``amazon`` dataset with ``fixture=2023``).
  * ``retinopathy``: the Kaggle layout, ``trainLabels.csv`` (``image,level``) and
    ``train/<id>_<left|right>.jpeg``, half of the images 96x72 ("high resolution"), half 40x30.
    The fixture loader uses ``min_id_width=64`` unless the option says otherwise.
  * ``imagenet``: ``sketch/<wnid>/*.JPEG`` (ImageNet-Sketch zip), ``imagenet-a/<wnid>/*.jpg``
    and ``imagenet-r/<wnid>/*.jpg`` (the Hendrycks tars, with README.txt),
    ``imagenetv2-matched-frequency-format-val/<class index>/*.jpeg`` (ImageNetV2 tar).
  * ``cifar_vehicles``: the CIFAR-10 image folder, ``train/<class>/NNNN.jpg`` (10 per class)
    and ``test/<class>/NNNN.jpg`` (5 per class) for all ten classes, 32 x 32; each class has
    its own mean colour, so a model can learn something from them.
Everything depends only on ``seed``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

from levi_core.data.imagenet_classes import imagenet_wnids

import numpy as np

FIXTURE_VERSION = "1"

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
AMAZON_COLUMNS = [
    "marketplace", "customer_id", "review_id", "product_id", "product_parent", "product_title",
    "product_category", "star_rating", "helpful_votes", "total_votes", "vine",
    "verified_purchase", "review_headline", "review_body", "review_date",
]
AMAZON_CATEGORIES = ["Watches", "Toys", "Sports", "Music", "Jewelry", "Furniture", "Baby"]


def _movielens(folder: Path, rng: np.random.Generator) -> None:
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


def _amazon(folder: Path, rng: np.random.Generator) -> None:
    customers = [f"{int(x)}" for x in rng.integers(10000, 99999999, size=150)]
    words = ["Secret", "Garden", "History", "Python", "Cooking", "Night", "Ocean", "Guide",
             "Complete", "Tales", "Modern", "Art", "Deluxe", "Set", "Classic"]
    serial = iter(range(10**6))

    def products(prefix: str, k: int) -> list[tuple[str, str, str]]:
        out = []
        for _ in range(k):
            title = " ".join(rng.choice(words, size=int(rng.integers(2, 5))))
            out.append((f"{prefix}{next(serial):08d}", str(int(rng.integers(1e8, 1e9))), title))
        return out

    def write(name: str, category: str, n: int, years: list[int], gz: bool) -> None:
        prods = products("B" if category != "Books" else "0", max(8, n // 6))
        path = folder / f"amazon_reviews_us_{name}.tsv{'.gz' if gz else ''}"
        opener = gzip.open if gz else open
        with opener(path, "wt", encoding="utf-8", newline="\n") as f:
            f.write("\t".join(AMAZON_COLUMNS) + "\n")
            for _ in range(n):
                pid, parent, title = prods[int(rng.integers(0, len(prods)))]
                y = years[int(rng.integers(0, len(years)))]
                date = f"{y}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
                row = [
                    "US", customers[int(rng.integers(0, len(customers)))],
                    f"R{next(serial):013d}", pid, parent, title, category,
                    str(int(rng.integers(1, 6))), str(int(rng.integers(0, 9))),
                    str(int(rng.integers(9, 20))), "N", "Y",
                    "Five Stars", "A review body that the loader must not use.", date,
                ]
                f.write("\t".join(row) + "\n")

    write("Books_v1_00", "Books", 260, [2004, 2005, 2006], gz=True)
    write("Books_v1_01", "Books", 260, [2001, 2002, 2003], gz=False)
    write("Books_v1_02", "Books", 260, [2000, 2001], gz=False)
    for cat in AMAZON_CATEGORIES:
        write(f"{cat}_v1_00", cat, 60, [2010, 2011, 2012], gz=True)


def _amazon2023(folder: Path, rng: np.random.Generator) -> None:
    """Amazon Reviews 2023 files: ``<C>.csv[.gz]`` (rating_only) and ``meta_<C>.jsonl[.gz]`` for
    the 7 categories the loader reads, with the heterogeneous meta fields of the real files
    (title null or missing, categories empty, price a number or "None", nested details), the
    category paths the role rules look at (Watches / Jewelry below the Clothing top level,
    Furniture second under Home, and near misses), ratings after 2015-08-31 (clipped by default),
    products rated but without meta, and meta records never rated."""
    import json

    users = ["A" + "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), size=27)) for _ in range(160)]
    words = ["Secret", "Garden", "History", "Python", "Cooking", "Night", "Ocean", "Guide",
             "Complete", "Tales", "Modern", "Art", "Deluxe", "Set", "Classic", "Café"]
    serial = iter(range(10**6))
    day_ms = 86_400_000

    def ts(year: int) -> int:
        start = int(np.datetime64(f"{year}-01-01", "ms").astype(np.int64))
        return start + int(rng.integers(0, 365)) * day_ms + int(rng.integers(0, day_ms))

    def record(asin: str, cats: list[str], title_kind: int) -> dict:
        rec: dict = {"main_category": cats[0] if cats else None, "average_rating": round(float(rng.uniform(1, 5)), 1),
                     "rating_number": int(rng.integers(0, 900)), "features": [], "description": [],
                     "price": [None, "None", 12.99, "$5.49"][int(rng.integers(0, 4))],
                     "images": [{"thumb": "https://example.invalid/t.jpg", "variant": "MAIN"}],
                     "videos": [], "store": [None, "Acme"][int(rng.integers(0, 2))],
                     "categories": cats, "details": {"Publisher": "X", "Item Weight": "1 pounds"}
                     if rng.integers(0, 2) else {}, "parent_asin": asin, "bought_together": None}
        title = " ".join(rng.choice(words, size=int(rng.integers(2, 5))))
        if title_kind == 1:
            rec["title"] = None
        elif title_kind != 2:  # 2: no title field at all
            rec["title"] = title + ("  with  spaces\t" if title_kind == 3 else "")
        return rec

    def write(cat: str, plans: list[list[str]], n: int, years: list[int], csv_gz: bool, meta_gz: bool) -> None:
        prods = [(f"B{next(serial):09d}" if cat != "Books" else f"{next(serial):010d}", c) for c in plans]
        meta_open = gzip.open if meta_gz else open
        with meta_open(folder / f"meta_{cat}.jsonl{'.gz' if meta_gz else ''}", "wt", encoding="utf-8", newline="\n") as f:
            for i, (asin, cats) in enumerate(prods):
                if i % 29 == 28:
                    continue  # rated but no meta record: the title stays empty
                kind = 0 if i % 7 else int(rng.integers(1, 4))
                f.write(json.dumps(record(asin, cats, kind)) + "\n")
            for _ in range(3):  # never rated
                f.write(json.dumps(record(f"Z{next(serial):09d}", plans[0], 0)) + "\n")
        csv_open = gzip.open if csv_gz else open
        with csv_open(folder / f"{cat}.csv{'.gz' if csv_gz else ''}", "wt", encoding="utf-8", newline="\n") as f:
            f.write("user_id,parent_asin,rating,timestamp\n")
            seen = set()
            while len(seen) < n:
                asin = prods[int(rng.integers(0, len(prods)))][0]
                user = users[int(rng.integers(0, len(users)))]
                if (user, asin) in seen:
                    continue
                seen.add((user, asin))
                y = years[int(rng.integers(0, len(years)))]
                f.write(f"{user},{asin},{float(rng.integers(1, 6))},{ts(y)}\n")

    books = [["Books", "Literature & Fiction"], ["Books"], [], ["Books", "History", "Europe"]]
    # Books: most ratings in the 4 ID years (2007-2010), some in 2015 (OOD time, clipped at
    # 2015-08-31) and 2016 (dropped unless until=none).
    book_years = [2007, 2008, 2009, 2010] * 3 + [2011, 2012, 2013, 2014, 2015, 2015, 2016]
    write("Books", [books[i % 4] for i in range(90)], 700, book_years, csv_gz=True, meta_gz=False)
    spans = list(range(2011, 2017))
    for cat, top in (("Toys_and_Games", "Toys & Games"), ("Sports_and_Outdoors", "Sports & Outdoors"),
                     ("CDs_and_Vinyl", "CDs & Vinyl"), ("Baby_Products", "Baby Products")):
        gz = cat in ("Toys_and_Games", "CDs_and_Vinyl")
        write(cat, [[top, "Sub"] if i % 3 else [] for i in range(30)], 150, spans, csv_gz=gz, meta_gz=not gz)
    top = "Clothing, Shoes & Jewelry"
    clothing = [[top, "Women", "Watches", "Wrist Watches"], [top, "Men", "Watches"],
                [top, "Women", "Jewelry", "Necklaces"], [top, "Men", "Jewelry", "Rings"],
                [top, "Women", "Clothing", "Dresses"], [top], [],
                [top, "Novelty & More", "Jewelry", "Watches"],  # both: a watch
                [top, "Women", "Shoes", "Jewelry Boxes"]]  # "Jewelry Boxes" is not "Jewelry"
    write("Clothing_Shoes_and_Jewelry", [clothing[i % len(clothing)] for i in range(60)], 400, spans,
          csv_gz=True, meta_gz=True)
    home = [["Home & Kitchen", "Furniture", "Living Room Furniture"], ["Home & Kitchen", "Furniture"],
            ["Home & Kitchen", "Kitchen & Dining"], ["Home & Kitchen", "Bedding", "Furniture"], []]
    write("Home_and_Kitchen", [home[i % len(home)] for i in range(50)], 300, spans, csv_gz=False, meta_gz=True)


def _jpeg(path: Path, w: int, h: int, rng: np.random.Generator, ext_format: str = "JPEG") -> None:
    from PIL import Image

    base = rng.integers(0, 256, size=(1, 1, 3))
    noise = rng.integers(-40, 40, size=(h, w, 3))
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format=ext_format, quality=80)


def _retinopathy(folder: Path, rng: np.random.Generator) -> None:
    (folder / "train").mkdir()
    lines = ["image,level"]
    for i in range(24):
        for side in ("left", "right"):
            name = f"{10 + i}_{side}"
            w, h = (96, 72) if i % 2 == 0 else (40, 30)
            _jpeg(folder / "train" / f"{name}.jpeg", w, h, rng)
            lines.append(f"{name},{int(rng.integers(0, 5))}")
    (folder / "trainLabels.csv").write_text("\n".join(lines) + "\n")


def _imagenet(folder: Path, rng: np.random.Generator) -> None:
    wnids = imagenet_wnids()
    classes = [0, 1, 6, 11, 107, 300]  # a few 1000-class indices
    for c in classes:
        d = folder / "sketch" / wnids[c]
        d.mkdir(parents=True)
        for k in range(6):
            _jpeg(d / f"sketch_{k}.JPEG", 40, 32, rng)
    for variant, subset in (("imagenet-a", [1, 6, 107]), ("imagenet-r", [1, 11, 300])):
        (folder / variant).mkdir()
        (folder / variant / "README.txt").write_text(f"{variant} fixture\n")
        for c in subset:
            d = folder / variant / wnids[c]
            d.mkdir()
            for k in range(3):
                _jpeg(d / f"{variant}_{k}.jpg", 36, 36, rng)
    v2 = folder / "imagenetv2-matched-frequency-format-val"
    for c in classes:
        d = v2 / str(c)
        d.mkdir(parents=True)
        for k in range(2):
            _jpeg(d / f"{rng.integers(0, 1 << 40):x}.jpeg", 30, 40, rng)


def _cifar_vehicles(folder: Path, rng: np.random.Generator) -> None:
    from PIL import Image

    from levi_core.data.cifar_folder import CLASSES

    for split, n in (("train", 10), ("test", 5)):
        for k, c in enumerate(CLASSES):
            d = folder / split / c
            d.mkdir(parents=True)
            colour = np.array([(k * 97) % 256, (k * 57 + 80) % 256, (k * 31 + 160) % 256])
            for i in range(n):
                noise = rng.integers(-30, 30, size=(32, 32, 3))
                arr = np.clip(colour + noise, 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i:04d}.jpg", format="JPEG", quality=90)


GENERATORS = {"movielens": _movielens, "amazon": _amazon, "retinopathy": _retinopathy, "imagenet": _imagenet,
              "amazon2023": _amazon2023, "cifar_vehicles": _cifar_vehicles}
# Each fixture's random stream. The first four are the positions these names had in the sorted
# list of generators before amazon2023 existed: fixed here so adding a fixture changes no other.
STREAMS = {"amazon": 0, "imagenet": 1, "movielens": 2, "retinopathy": 3, "amazon2023": 4,
           "cifar_vehicles": 5}


def write_fixture(name: str, folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write the fixture of dataset ``name`` into ``folder`` (created; must be empty or absent)."""
    if name not in GENERATORS:
        from levi_core.errors import ConfigError

        raise ConfigError(f"no fixture for dataset {name!r}; fixtures: {', '.join(sorted(GENERATORS))}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    GENERATORS[name](folder, np.random.default_rng([seed, STREAMS[name]]))
    return folder


def fixture_dir(name: str, seed: int = 0, root: str | None = None) -> Path:
    """The fixture of ``name`` under the data cache (``<cache>/fixtures``), written once."""
    from levi_core.data.cache import cache_root

    base = cache_root(root) / "fixtures"
    final = base / f"{name}-v{FIXTURE_VERSION}-seed{seed}"
    if final.is_dir():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp", dir=base))
    write_fixture(name, tmp, seed)
    try:
        os.rename(tmp, final)
    except OSError:  # written concurrently by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def fixture_dataset(name: str, **options: object):
    """Load dataset ``name`` from its fixture: ``fixture_dataset("movielens", val_frac=0.2)``."""
    from levi_core.data.base import load_dataset

    opts = ",".join(f"{k}={v}" for k, v in {"fixture": 1, **options}.items())
    return load_dataset(f"{name}:{opts}")
