"""Amazon reviews with the paper's time and product shifts (Sec. 5 and D.1).

Sources (option ``source``, default ``auto``):
  * ``2023``: McAuley Lab's Amazon Reviews 2023 files (``<C>.csv[.gz]`` rating_only +
    ``meta_<C>.jsonl[.gz]``), the only Amazon reviews users can download today; read by
    ``levi_core.data.amazon2023``, whose docstring gives the files, the category mapping onto the
    paper's roles and the clipping (option ``until``, default 2015-08-31; ``until=none`` for the
    full span). Example ids there are ``<user_id>_<parent_asin>_<timestamp>``.
  * ``files``: the original 15-column tab-separated files in one folder (``--data-dir``), named
    as published: ``amazon_reviews_us_<Config>.tsv`` or ``.tsv.gz`` with ``<Config>`` e.g.
    ``Books_v1_00``, ``Watches_v1_00``; header ``marketplace customer_id review_id product_id
    product_parent product_title product_category star_rating helpful_votes total_votes vine
    verified_purchase review_headline review_body review_date``. Their public source was taken
    down in 2023; this path is for users who kept a copy. Rows without 15 fields are skipped and
    counted (``info["malformed_rows"]``); a file with another header is an error.
  * ``tfds``: prepared TFDS ``amazon_us_reviews/<Config>`` under ``--data-dir``,
    ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets`` (``download=False``; TFDS's download URLs
    are dead, so ``download`` is not offered).
  * ``auto``: the original files when the folder has any ``amazon_reviews_us_*.tsv*``, else the
    2023 files when it has any of them (also in the hub's ``benchmark/0core/rating_only`` and
    ``raw/meta_categories`` sub-folders), else TFDS, else an error listing all three.
  * ``fixture=1``: the generated fixture of the original TSVs (what the smoke preset reads);
    ``fixture=2023``: the generated fixture of the 2023 files (``levi_core.data.fixtures``).
Role names, options and inputs are the same whatever the source, so tables line up.

Shift:
  * ID = Books reviews of the first ``id_years`` (default 4) calendar years present in the Books
    files (by ``review_date``); which Books files: option ``books`` (default
    ``Books_v1_00+Books_v1_01+Books_v1_02``; the ones absent from the folder are skipped, at
    least one must be there).
  * ``ood/time`` = Books reviews of the most recent year present.
  * ``ood/product/<category>`` for each of ``categories`` (default
    ``Watches+Toys+Sports+Music+Jewelry+Furniture+Baby``, the paper's watch, toy, sports, music,
    jewelry, furniture, baby; file ``<Category>_v1_00``), role names lower-cased.
Subsampling (the paper does not give sizes): a seeded (``sample_seed``, 0) uniform sample of at
most ``max_id`` (default 100000) ID reviews and at most ``max_ood`` (default 20000) reviews per
OOD set; 0 means all. The sample is the reviews with the smallest seeded hash of their
``review_id``, so it does not depend on file order or source (files or TFDS). The ID sample is
split into train / id_val / id_test with ``val_frac`` =
``test_frac`` = 0.1 and ``split_seed`` 0. Rows are put in (review_date, review_id) order first, so
the result does not depend on file order or source.

Inputs (no review text: the paper drops headline and body, which give the rating away):
  * large ``text``: "When the customer id is 53096384, the product title is <title>, and the
    product id is 0312328796, what can be the customer rating on this product?:".
  * small (int32; vocabularies from train only, 0 = unknown/padding): ``customer_id``,
    ``product_id``, ``title_tokens`` ([N, ``title_len`` = 16]).
Labels: float32 star ratings 1-5; regression, RMSE. Example ids: ``review_id``.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import sys
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from levi_core.data import amazon2023, common, fixtures
from levi_core.data.base import (Dataset, Split, register_dataset, register_preset_ids,
                                 register_shift)
from levi_core.errors import ConfigError, DataError

NAME = "amazon"
VERSION = "1"
COLUMNS = [
    "marketplace", "customer_id", "review_id", "product_id", "product_parent", "product_title",
    "product_category", "star_rating", "helpful_votes", "total_votes", "vine",
    "verified_purchase", "review_headline", "review_body", "review_date",
]
SENTENCE = (
    "When the customer id is {customer}, the product title is {title}, and the product id is "
    "{product}, what can be the customer rating on this product?:"
)


@dataclasses.dataclass(frozen=True)
class AmazonOptions(common.DatasetOptions):
    """The options of a ``amazon`` dataset id (``amazon:key=value,...``); each field's
    annotation is how its text is read."""

    source: str = "auto"
    fixture: str = "0"
    books: str = "Books_v1_00+Books_v1_01+Books_v1_02"
    categories: str = "Watches+Toys+Sports+Music+Jewelry+Furniture+Baby"
    id_years: int = 4
    max_id: int = 100000
    max_ood: int = 20000
    sample_seed: int = 0
    val_frac: float = 0.1
    test_frac: float = 0.1
    split_seed: int = 0
    title_len: int = 16
    until: str = "2015-08-31"
    cache: bool = True
    cache_dir: str = ""


HOW = (
    "Put the original Amazon US Reviews TSV files (amazon_reviews_us_<Config>.tsv or .tsv.gz, "
    "15 tab-separated columns with a header) in one folder and pass it as --data-dir, or "
    "prepare TFDS 'amazon_us_reviews/<Config>' under --data-dir / $TFDS_DATA_DIR."
)
SOURCES = ("auto", "2023", "files", "tfds")
HOW_ANY = amazon2023.HOW + " A copy of the original amazon_us_reviews TSVs (or a prepared TFDS copy) works too."
KEEP = ("customer_id", "review_id", "product_id", "product_title", "star_rating", "review_date")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _file_for(folder: Path, config: str) -> Path | None:
    for suffix in (".tsv.gz", ".tsv"):
        p = folder / f"amazon_reviews_us_{config}{suffix}"
        if p.is_file():
            return p
    return None


class _Stats:
    """Malformed rows per file (each pass over a file sets, not adds, its count)."""

    def __init__(self):
        self.per_file: dict[str, int] = {}


def _iter_file(path: Path, stats: _Stats) -> Iterator[tuple[str, ...]]:
    """Yield KEEP fields of each row of an original TSV(.gz)."""
    idx = [COLUMNS.index(k) for k in KEEP]
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != COLUMNS:
                raise DataError(
                    f"{NAME}: {str(path)!r} does not start with the 15-column header of the "
                    f"original files ({' '.join(COLUMNS)}); got {str(header)[:120]!r}. {HOW}"
                )
            bad = 0
            for row in reader:
                if len(row) != len(COLUMNS) or len(row[14]) < 4 or not row[14][:4].isdigit():
                    bad += 1
                    continue
                yield tuple(row[i] for i in idx)
            stats.per_file[path.name] = bad
    except (OSError, EOFError, zlib.error, UnicodeError) as e:
        raise DataError(f"{NAME}: {str(path)!r} is corrupt or unreadable ({e}). {HOW}") from None


def _iter_tfds(data_dir: str | None, config: str) -> Iterator[tuple[str, ...]]:
    common.quiet_tensorflow()
    import tensorflow_datasets as tfds

    prepared = common.tfds_prepared_dir(data_dir, f"amazon_us_reviews/{config}")
    ds = tfds.load(f"amazon_us_reviews/{config}", split="train", data_dir=str(prepared.parents[2]), download=False)
    for ex in tfds.as_numpy(ds):
        d = ex["data"]
        yield tuple(
            str(int(d[k])) if k == "star_rating" else d[k].decode("utf-8", "replace") for k in KEEP
        )


def _sample(iter_fn: Callable[[], Iterator[tuple[str, ...]]], keep: Callable[[tuple], str | None],
            limits: dict[str, int], seed: int) -> dict[str, list[tuple[str, ...]]]:
    """One pass: for each group (``keep(row)`` -> group or None) keep all rows, or when
    ``limits[group]`` > 0 the rows with the smallest ``limits[group]`` values of a seeded hash of
    their review_id. The sample is uniform and does not depend on file order or source."""
    import hashlib
    import heapq

    out: dict[str, list] = {}
    heaps: dict[str, list] = {}
    salt = str(seed).encode() + b":"
    for row in iter_fn():
        g = keep(row)
        if g is None:
            continue
        k = limits.get(g, 0)
        if k <= 0:
            out.setdefault(g, []).append(row)
            continue
        h = int.from_bytes(hashlib.blake2b(salt + row[1].encode(), digest_size=8).digest(), "big")
        heap = heaps.setdefault(g, [])
        if len(heap) < k:
            heapq.heappush(heap, (-h, row[1], row))
        elif h < -heap[0][0]:
            heapq.heapreplace(heap, (-h, row[1], row))
    for g, heap in heaps.items():
        out[g] = [item[2] for item in heap]
    return out


def _year(row: tuple[str, ...]) -> int:
    return int(row[5][:4])


def build(books_iter, category_iters: dict[str, Callable], opts: common.DatasetOptions, sources: dict,
          product_groups: Callable[[], dict[str, list]] | None = None,
          fill_titles: Callable[[dict[str, list]], dict[str, list]] | None = None,
          source_words: str = "") -> Dataset:
    """The dataset from row iterators (``KEEP`` tuples). ``books_iter`` is called twice (years,
    then the sample). Product sets come from ``category_iters`` (one iterator per category) or,
    when given, ``product_groups()`` (role -> sampled rows: the 2023 reader, which fills several
    roles from one file). ``fill_titles`` gives sampled rows their titles afterwards (the 2023
    titles live in a separate, possibly 13 GB, meta file, read once for the kept products)."""
    common.count_build(NAME)
    stats_years: dict[int, int] = {}
    for row in books_iter():
        y = _year(row)
        stats_years[y] = stats_years.get(y, 0) + 1
    years = sorted(stats_years)
    if len(years) < opts["id_years"] + 1:
        raise DataError(
            f"{NAME}: the Books files cover the years {years}; the time shift needs at least "
            f"{opts['id_years'] + 1} distinct years (id_years={opts['id_years']} plus the most recent)."
        )
    id_years = set(years[: opts["id_years"]])
    ood_year = years[-1]

    def books_group(row):
        y = _year(row)
        return "id" if y in id_years else ("time" if y == ood_year else None)

    books = _sample(books_iter, books_group, {"id": opts["max_id"], "time": opts["max_ood"]}, opts["sample_seed"])
    groups: dict[str, list] = {"id": books.get("id", []), "ood/time": books.get("time", [])}
    if product_groups is None:
        for cat, it in category_iters.items():
            got = _sample(it, lambda row: "all", {"all": opts["max_ood"]}, opts["sample_seed"])
            groups[f"ood/product/{cat.lower()}"] = got.get("all", [])
        cats = [c.lower() for c in category_iters]
    else:
        by_role = product_groups()
        groups.update({f"ood/product/{r}": rows for r, rows in by_role.items()})
        cats = list(by_role)
    if fill_titles is not None:
        groups = fill_titles(groups)
    for g, rows in groups.items():
        uniq = {r[1]: r for r in rows}  # review_id
        groups[g] = sorted(uniq.values(), key=lambda r: (r[5], r[1]))
        if not groups[g]:
            raise DataError(f"{NAME}: no reviews for {g}; check the files. {HOW}")

    id_rows = groups.pop("id")
    tr, va, te = common.split_indices(len(id_rows), opts["val_frac"], opts["test_frac"], opts["split_seed"])
    parts = {"train": [id_rows[i] for i in tr], "id_val": [id_rows[i] for i in va], "id_test": [id_rows[i] for i in te]}
    parts.update(groups)
    train = parts["train"]
    cust = common.Vocab(r[0] for r in train)
    prod = common.Vocab(r[2] for r in train)
    title_tok = {r[3]: common.tokenize(r[3]) for rows in parts.values() for r in rows}
    words = common.Vocab(t for r in train for t in title_tok[r[3]])
    splits = {}
    for role, rows in parts.items():
        splits[role] = Split(
            example_ids=np.array([r[1] for r in rows]),
            labels=np.array([float(r[4]) for r in rows], dtype=np.float32),
            small={
                "customer_id": cust.encode([r[0] for r in rows]),
                "product_id": prod.encode([r[2] for r in rows]),
                "title_tokens": words.encode_lists([title_tok[r[3]] for r in rows], opts["title_len"]),
            },
            large={"text": np.array([SENTENCE.format(customer=r[0], title=r[3], product=r[2]) for r in rows])},
        )
    shift = (
        f"Time and product shifts{source_words}. ID: Books reviews of the first {opts['id_years']} years "
        f"({min(id_years)}-{max(id_years)}), sampled to at most {opts['max_id'] or 'all'} and split "
        f"train/id_val/id_test {1 - opts['val_frac'] - opts['test_frac']:.2f}/{opts['val_frac']:.2f}/"
        f"{opts['test_frac']:.2f}. OOD time: Books reviews of the most recent year ({ood_year}). "
        f"OOD product: reviews of {', '.join(cats)} (at most {opts['max_ood'] or 'all'} per set)."
    )
    info = {
        "options": opts.resolved(),
        "sources": sources,
        "books_reviews_per_year": {str(y): c for y, c in sorted(stats_years.items())},
        "id_years": sorted(id_years),
        "ood_year": ood_year,
        "date_ranges": {role: [rows[0][5], rows[-1][5]] for role, rows in parts.items() if rows},
    }
    return Dataset(
        name=NAME, task="regression", metric="rmse", splits=splits,
        vocab_sizes={"customer_id": len(cust), "product_id": len(prod), "title_tokens": len(words)},
        shift=shift, info=info,
    )


def _legacy_key(opts: common.DatasetOptions) -> dict[str, object]:
    """Cache-key options of the original-TSV / TFDS sources: ``until`` only applies to the 2023
    files (the original data ends on 2015-08-31), so it is left out and keys stay as they were."""
    return {k: v for k, v in common.key_options(opts).items() if k != "until"}


def _fixture_kind(text: str) -> str | None:
    """``fixture`` option: 0 (none), 1 (the original-TSV fixture, what the smoke preset has
    always read), 2023 (the Amazon Reviews 2023 fixture, the format users can get today)."""
    t = str(text).strip().lower()
    if t in ("0", "false", "no", ""):
        return None
    if t in ("1", "true", "yes"):
        return "tsv"
    if t == "2023":
        return "2023"
    raise ConfigError(f"dataset {NAME!r}: option fixture={text!r}; use 0, 1 (original TSVs) or 2023")


@register_dataset(NAME, modality="text", entities={"user": "customer_id", "item": "product_id"},
                  batch_size=100, options=AmazonOptions)
def load_amazon(options: dict[str, str], data_dir: str | None) -> Dataset:
    opts = AmazonOptions.parse(NAME, options)
    source = opts["source"]
    if source not in SOURCES:
        raise DataError(f"{NAME}: source={source!r}; use {', '.join(SOURCES)}")
    fixture = _fixture_kind(opts["fixture"])
    if fixture is not None:

        data_dir = str(fixtures.fixture_dir(NAME if fixture == "tsv" else "amazon2023"))
        source = "files" if fixture == "tsv" else "2023"
    books_cfgs = common.parse_list(opts["books"])
    cats = common.parse_list(opts["categories"])
    roles = [c.lower() for c in cats]
    unknown = [r for r in roles if r not in amazon2023.ROLES]
    expected = [f"amazon_reviews_us_{c}.tsv(.gz)" for c in books_cfgs] + [
        f"amazon_reviews_us_{c}_v1_00.tsv(.gz)" for c in cats
    ]
    # The 2023 files first (what users can get), then the two sources of the original data.
    expected_any = (amazon2023.expected_files([r for r in roles if r not in unknown])
                    + ["or a copy of the original TSVs (no longer downloadable): " + ", ".join(expected)]
                    + ["or prepared TFDS amazon_us_reviews/<Config> for the same configs"])
    folder = Path(data_dir) if data_dir else None
    if folder is not None and not folder.is_dir():
        raise common.missing_files_error(NAME, data_dir, expected_any, HOW_ANY)
    has_files = folder is not None and any(folder.glob("amazon_reviews_us_*.tsv*"))
    if source == "2023" or (source == "auto" and not has_files and folder is not None
                            and amazon2023.looks_like_2023(folder)):
        if folder is None:
            raise common.missing_files_error(NAME, None, amazon2023.expected_files(roles), amazon2023.HOW)
        if unknown:
            raise DataError(
                f"{NAME}: categories {unknown} have no Amazon Reviews 2023 mapping; the roles are "
                f"{'+'.join(r.capitalize() for r in amazon2023.ROLES)}"
            )
        stats = amazon2023.Stats()
        books, groups, titles, signatures = amazon2023.sources(folder, roles, opts, stats, _sample)

        def make2023():
            until = amazon2023.parse_until(opts["until"])
            words = (" (Amazon Reviews 2023, ratings up to "
                     + (f"{opts['until']}" if until is not None else "the end of the files, full span")
                     + ")")
            ds = build(books, {}, opts, {"amazon2023": str(folder)}, product_groups=groups,
                       fill_titles=titles, source_words=words)
            return dataclasses.replace(ds, info={
                **ds.info, "source": "amazon2023", "malformed_rows": dict(stats.malformed),
                "clipped_rows": dict(stats.clipped), "missing_titles": stats.missing_titles,
                "categories_2023": {r: amazon2023.ROLES[r][0] for r in roles},
            })

        return common.load_cached(NAME, VERSION, {**common.key_options(opts), "format": "2023"},
                                  signatures, make2023, opts["cache_dir"] or None, opts["cache"])
    if source == "files" or (source == "auto" and has_files):
        if folder is None:
            raise common.missing_files_error(NAME, None, expected, HOW)
        books = [p for p in (_file_for(folder, c) for c in books_cfgs) if p is not None]
        cat_files = {c: _file_for(folder, f"{c}_v1_00") for c in cats}
        missing = [f"amazon_reviews_us_{c}_v1_00.tsv(.gz)" for c, p in cat_files.items() if p is None]
        if not books:
            missing.insert(0, "at least one of " + ", ".join(f"amazon_reviews_us_{c}.tsv(.gz)" for c in books_cfgs))
        if missing:
            raise common.missing_files_error(NAME, str(folder), [m + "  (missing)" for m in missing], HOW)
        stats = _Stats()
        sources = {p.name: common.file_signature(p) for p in books + list(cat_files.values())}

        def make():
            ds = build(
                lambda: (r for p in books for r in _iter_file(p, stats)),
                {c: (lambda p=p: _iter_file(p, stats)) for c, p in cat_files.items()},
                opts, {"files": str(folder)},
            )
            return dataclasses.replace(ds, info={**ds.info, "malformed_rows": dict(stats.per_file)})

        return common.load_cached(NAME, VERSION, _legacy_key(opts), sources, make,
                                  opts["cache_dir"] or None, opts["cache"])
    prepared_books = [c for c in books_cfgs if common.tfds_prepared_dir(data_dir, f"amazon_us_reviews/{c}")]
    missing_cats = [c for c in cats if not common.tfds_prepared_dir(data_dir, f"amazon_us_reviews/{c}_v1_00")]
    if not prepared_books or missing_cats:
        if source == "tfds":
            raise common.missing_files_error(
                NAME, data_dir, [f"prepared TFDS amazon_us_reviews/{c}" for c in books_cfgs]
                + [f"prepared TFDS amazon_us_reviews/{c}_v1_00" for c in cats], HOW)
        raise common.missing_files_error(NAME, data_dir, expected_any, HOW_ANY)
    sources = {
        c: common.file_signature(common.tfds_prepared_dir(data_dir, f"amazon_us_reviews/{c}") / "dataset_info.json")
        for c in prepared_books + [f"{c}_v1_00" for c in cats]
    }
    return common.load_cached(
        NAME, VERSION, _legacy_key(opts), sources,
        lambda: build(
            lambda: (r for c in prepared_books for r in _iter_tfds(data_dir, c)),
            {c: (lambda c=c: _iter_tfds(data_dir, f"{c}_v1_00")) for c in cats},
            opts, {"tfds": data_dir or "default"},
        ),
        opts["cache_dir"] or None, opts["cache"],
    )


# ---------------------------------------------------------------- fixture
AMAZON_COLUMNS = [
    "marketplace", "customer_id", "review_id", "product_id", "product_parent", "product_title",
    "product_category", "star_rating", "helpful_votes", "total_votes", "vine",
    "verified_purchase", "review_headline", "review_body", "review_date",
]
AMAZON_CATEGORIES = ["Watches", "Toys", "Sports", "Music", "Jewelry", "Furniture", "Baby"]


def _fixture(folder: Path, rng: np.random.Generator) -> None:
    """``amazon_reviews_us_<Category>_v1_00.tsv(.gz)`` with the original 15-column header
    (Books in three files v1_00 (gz), v1_01, v1_02; Books dates 2000-2006; the 7 product
    categories)."""
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


# the stream is fixed per fixture name, so adding a fixture changes no other's files
fixtures.register_fixture(NAME, _fixture, stream=0)


# ---------------------------------------------------------------- tables and presets
register_shift("amazon_time", "Amazon (time)", "amazon", "ood/time", "rmse")
register_shift("amazon_product", "Amazon (product)", "amazon", "ood/product/mean", "rmse")
# cpu: the data is not on the 2-core machines the preset is sized for
register_preset_ids("amazon", {"smoke": "amazon:fixture=2023", "cpu": None})
