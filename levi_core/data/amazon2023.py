"""Reading McAuley Lab's Amazon Reviews 2023 files for the ``amazon`` dataset (``source=2023``).

Why this exists: the paper's source, ``amazon_us_reviews``, was taken down in 2023 (TFDS's
builder still points at the dead URLs), so nobody can obtain it today. Amazon Reviews 2023
(Hou et al. 2024, arXiv 2403.03952) is its maintained successor, served as plain files on the
Hugging Face hub (``McAuley-Lab/Amazon-Reviews-2023``) and on the lab's server. It may not be
redistributed: users download it themselves and nothing of it is in the project.

Files, per category ``<C>``, in one folder (``--data-dir``):
  * ``<C>.csv`` or ``<C>.csv.gz``: ``benchmark/0core/rating_only/<C>.csv``, header
    ``user_id,parent_asin,rating,timestamp``, timestamp in unix milliseconds;
  * ``meta_<C>.jsonl`` or ``.jsonl.gz``: ``raw/meta_categories/meta_<C>.jsonl``, one JSON object
    per product; only ``parent_asin``, ``title`` and ``categories`` (a list, possibly empty) are
    read. Field types vary between rows and Books' meta is about 13 GB, so it is streamed line by
    line and a line is JSON-decoded only when it can matter (its ``parent_asin`` is wanted, or it
    contains one of the category names a rule looks for).

The paper's roles on 2023 categories (``ROLES``): ID and ``ood/time`` from ``Books``;
``toys`` = ``Toys_and_Games``, ``sports`` = ``Sports_and_Outdoors``, ``music`` = ``CDs_and_Vinyl``,
``baby`` = ``Baby_Products`` (whole categories, as the original files were); ``watches`` and
``jewelry`` = ``Clothing_Shoes_and_Jewelry`` products whose ``categories`` have ``Watches``
(resp. ``Jewelry``) as an element below the top level (the original data had Watches and
Jewelry files; 2023 has them inside Clothing, whose top level "Clothing, Shoes & Jewelry" must not count; a product
with both is a watch); ``furniture`` = ``Home_and_Kitchen`` products whose second category is
``Furniture`` (the original Furniture file; inside Home in 2023). A product's ratings are kept
only after its meta record says which role it has, so Clothing and Home are streamed once each.

Rows map onto the legacy loader's row tuple (``amazon.KEEP``): customer id = ``user_id``, product
id = ``parent_asin``, title from meta, rating, date = the UTC day of ``timestamp``; the example id
is ``<user_id>_<parent_asin>_<timestamp>`` (no review id in rating_only files). Ratings after
``until`` (default 2015-08-31, the last day of the original files) are dropped, so "first 4 years"
and "most recent year" mean what they meant in the paper; ``until=none`` keeps the full span.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from levi_core.data import common, fixtures
from levi_core.errors import DataError

NAME = "amazon"
HEADER = ["user_id", "parent_asin", "rating", "timestamp"]
BOOKS = "Books"
# role -> (2023 category, rule); a rule picks the role's products from that category's meta.
ROLES: dict[str, tuple[str, str | None]] = {
    "watches": ("Clothing_Shoes_and_Jewelry", "watches"),
    "toys": ("Toys_and_Games", None),
    "sports": ("Sports_and_Outdoors", None),
    "music": ("CDs_and_Vinyl", None),
    "jewelry": ("Clothing_Shoes_and_Jewelry", "jewelry"),
    "furniture": ("Home_and_Kitchen", "furniture"),
    "baby": ("Baby_Products", None),
}
# Strings a meta line must contain for a rule to possibly match (cheap test before JSON decoding).
RULE_NEEDLES = {"watches": '"Watches"', "jewelry": '"Jewelry"', "furniture": '"Furniture"'}
# What to expect per category (ratings / products in the full files, from the dataset's paper,
# rounded): a rating_only CSV row is ~60 bytes, so the CSV is ~60 B x ratings uncompressed.
SIZES = {
    "Books": ("29.5M ratings", "4.4M products; meta ~13 GB"),
    "Clothing_Shoes_and_Jewelry": ("66.0M ratings", "7.2M products"),
    "Home_and_Kitchen": ("67.4M ratings", "3.7M products"),
    "Toys_and_Games": ("16.3M ratings", "0.9M products"),
    "Sports_and_Outdoors": ("19.6M ratings", "1.6M products"),
    "CDs_and_Vinyl": ("4.8M ratings", "0.7M products"),
    "Baby_Products": ("6.0M ratings", "0.2M products"),
}
HUB = "https://huggingface.co/datasets/McAuley-Lab/Amazon-Reviews-2023"
LAB = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023"
HOW = (
    "Download the Amazon Reviews 2023 files yourself (they may not be redistributed) into one "
    "folder and pass it as --data-dir (or --data-dir amazon=DIR): for each category <C> the "
    "ratings file benchmark/0core/rating_only/<C>.csv and the product file "
    f"raw/meta_categories/meta_<C>.jsonl, from the hub ({HUB}; e.g. `huggingface-cli download "
    "McAuley-Lab/Amazon-Reviews-2023 benchmark/0core/rating_only/Books.csv "
    "raw/meta_categories/meta_Books.jsonl --repo-type dataset --local-dir DIR`; the hub's "
    f"sub-folders are found) or gzipped from the lab's server ({LAB}/<same path>.gz, linked from "
    "https://amazon-reviews-2023.github.io). levi_core/data/README.md lists the categories."
)
_ASIN = re.compile(r'"parent_asin"\s*:\s*"([^"]*)"')


def categories_for(roles: list[str]) -> list[str]:
    """The 2023 categories needed for ``roles`` (Books first, each once)."""
    out = [BOOKS]
    for r in roles:
        c = ROLES[r][0]
        if c not in out:
            out.append(c)
    return out


HUB_CSV_DIR = "benchmark/0core/rating_only"
HUB_META_DIR = "raw/meta_categories"


def find(folder: Path, category: str) -> tuple[Path | None, Path | None]:
    """(ratings CSV, meta JSONL) of ``category`` in ``folder``, or in the hub's own sub-folders
    under it (what ``huggingface-cli download --local-dir DIR`` leaves); None where absent."""
    csvs = [d / f"{category}.csv{gz}" for d in (folder, folder / HUB_CSV_DIR) for gz in (".gz", "")]
    metas = [d / f"meta_{category}.jsonl{gz}" for d in (folder, folder / HUB_META_DIR) for gz in (".gz", "")]
    return (next((p for p in csvs if p.is_file()), None), next((p for p in metas if p.is_file()), None))


def looks_like_2023(folder: Path) -> bool:
    """Whether ``folder`` holds any Amazon Reviews 2023 file of a category this loader reads."""
    cats = {BOOKS} | {c for c, _ in ROLES.values()}
    return any(any(find(folder, c)) for c in cats)


def expected_files(roles: list[str]) -> list[str]:
    return [f for c in categories_for(roles) for f in (f"{c}.csv(.gz)", f"meta_{c}.jsonl(.gz)")]


def parse_until(text: str) -> int | None:
    """``until`` -> the last millisecond kept (inclusive, UTC end of that day), or None."""
    t = str(text).strip().lower()
    if t in ("", "none", "all", "full"):
        return None
    try:
        day = _dt.date.fromisoformat(t)
    except ValueError:
        raise DataError(f"{NAME}: until={text!r} is not a date; write until=2015-08-31 or until=none") from None
    end = _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.timezone.utc) + _dt.timedelta(days=1)
    return int(end.timestamp() * 1000) - 1


class Stats:
    """What streaming found per file: malformed rows skipped, rows after ``until`` dropped."""

    def __init__(self):
        self.malformed: dict[str, int] = {}
        self.clipped: dict[str, int] = {}
        self.missing_titles = 0


def _corrupt(path: Path, e: Exception) -> DataError:
    return DataError(
        f"{NAME}: {str(path)!r} is corrupt, truncated or unreadable ({e}). Download it again "
        f"(a partial download of a .gz file ends like this). {HOW}"
    )


def _check_header(path: Path, header: list[str]) -> None:
    if header != HEADER:
        raise DataError(
            f"{NAME}: {str(path)!r} does not start with the header of the Amazon Reviews "
            f"2023 rating_only files ({','.join(HEADER)}); got {','.join(header)[:120]!r}. "
            f"Use benchmark/0core/rating_only/{path.name.split('.')[0]}.csv. {HOW}"
        )


def check_heads(csvs: list[Path], metas: list[Path]) -> None:
    """Read only the first line of every file: a wrong or unreadable file fails in seconds,
    before minutes of streaming the others. (A truncated .gz is only noticed where it ends.)"""
    for path in csvs:
        try:
            with common.open_text(path) as f:
                _check_header(path, f.readline().strip().lstrip("\ufeff").split(","))
        except (OSError, EOFError, zlib.error) as e:
            raise _corrupt(path, e) from None
    for path in metas:
        try:
            with common.open_text(path) as f:
                _record(path, 1, f.readline(), strict=True)
        except (OSError, EOFError, zlib.error) as e:
            raise _corrupt(path, e) from None


def iter_ratings(path: Path, until_ms: int | None, stats: Stats) -> Iterator[tuple[str, ...]]:
    """Yield ``amazon.KEEP`` tuples (customer, example id, product, "" title, rating, date) of a
    rating_only CSV; the title is filled in after sampling (see ``fill_titles``)."""
    days: dict[int, str] = {}
    bad = clipped = 0
    try:
        with common.open_text(path) as f:
            _check_header(path, f.readline().strip().lstrip("\ufeff").split(","))
            for line in f:
                parts = line.rstrip("\r\n").split(",")
                if len(parts) != 4:
                    bad += 1 if line.strip() else 0
                    continue
                user, asin, rating, ts = parts
                try:
                    r = float(rating)
                    t = int(ts)
                except ValueError:
                    bad += 1
                    continue
                if not (1 <= r <= 5) or not user or not asin:
                    bad += 1
                    continue
                if until_ms is not None and t > until_ms:
                    clipped += 1
                    continue
                day = t // 86_400_000
                date = days.get(day)
                if date is None:
                    date = days[day] = _dt.datetime.fromtimestamp(day * 86400, _dt.timezone.utc).date().isoformat()
                yield (user, f"{user}_{asin}_{t}", asin, "", f"{r:g}", date)
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(path, e) from None
    stats.malformed[path.name] = bad
    stats.clipped[path.name] = clipped


def _record(path: Path, lineno: int, line: str, strict: bool) -> dict | None:
    """One meta line decoded; None (skipped) for a bad line unless ``strict`` (the first line,
    which decides whether the file is a meta file at all)."""
    try:
        rec = json.loads(line)
    except ValueError:
        rec = None
    if isinstance(rec, dict) and isinstance(rec.get("parent_asin"), str) and rec["parent_asin"]:
        return rec
    if strict:
        raise DataError(
            f"{NAME}: {str(path)!r} line {lineno} is not an Amazon Reviews 2023 product record "
            f"(a JSON object with parent_asin, title and categories): {line[:100]!r}. Use "
            f"raw/meta_categories/{path.name.split('.')[0]}.jsonl. {HOW}"
        )
    return None


def _title(rec: dict) -> str:
    t = rec.get("title")
    return " ".join(str(t).split()) if t is not None else ""


def role_of(categories: object) -> str | None:
    """The role a product's ``categories`` list gives it (see the module docstring), or None."""
    if not isinstance(categories, list):
        return None
    below = [c for c in categories[1:] if isinstance(c, str)]
    if "Watches" in below:
        return "watches"
    if "Jewelry" in below:
        return "jewelry"
    if len(categories) > 1 and categories[1] == "Furniture":
        return "furniture"
    return None


def read_meta(path: Path, wanted: set[str] | None = None, rules: set[str] | None = None,
              stats: Stats | None = None) -> dict[str, tuple[str, str | None]]:
    """One pass over a meta file: ``parent_asin -> (title, role)`` for the products in
    ``wanted`` (titles of sampled rows) and/or those a rule in ``rules`` gives a role."""
    out: dict[str, tuple[str, str | None]] = {}
    needles = [RULE_NEEDLES[r] for r in rules or ()]
    bad = 0
    try:
        with common.open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if lineno > 1:
                    if not line.strip():
                        continue
                    m = _ASIN.search(line)
                    hit_rule = any(n in line for n in needles)
                    if m is not None and not hit_rule and (wanted is None or m.group(1) not in wanted):
                        continue
                    if m is None and not hit_rule and wanted is None:
                        continue
                rec = _record(path, lineno, line, strict=lineno == 1)
                if rec is None:
                    bad += 1
                    continue
                asin = rec["parent_asin"]
                role = role_of(rec.get("categories")) if rules else None
                if role is not None and role not in rules:
                    role = None
                if role is not None or (wanted is not None and asin in wanted):
                    out[asin] = (_title(rec), role)
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(path, e) from None
    if stats is not None:
        stats.malformed[path.name] = bad
    return out


def sources(
    folder: Path, roles: list[str], opts: common.Options, stats: Stats,
    sample: Callable,
) -> tuple[Callable, Callable, Callable, dict]:
    """What ``amazon.build`` needs for a 2023 folder: the Books row iterator, the per-role
    product groups (one pass per 2023 category), the title filler, and the file signatures.
    Raises the missing-files error when a needed file is absent."""
    files = {c: find(folder, c) for c in categories_for(roles)}
    missing = []
    for c, (csv, meta) in files.items():
        if csv is None:
            missing.append(f"{c}.csv(.gz)  (missing)")
        if meta is None:
            missing.append(f"meta_{c}.jsonl(.gz)  (missing)")
    if missing:
        present = [e for e in expected_files(roles) if not any(m.startswith(e) for m in missing)]
        raise common.missing_files_error(NAME, str(folder), present + missing, HOW)
    until = parse_until(opts["until"])
    check_heads([c for c, _ in files.values()], [m for _, m in files.values()])
    signatures = {p.name: common.file_signature(p) for pair in files.values() for p in pair}
    known: dict[str, tuple[str, str | None]] = {}

    def books():
        return iter_ratings(files[BOOKS][0], until, stats)

    def product_groups() -> dict[str, list]:
        out: dict[str, list] = {}
        by_cat: dict[str, list[str]] = {}
        for r in roles:
            by_cat.setdefault(ROLES[r][0], []).append(r)
        for cat, cat_roles in by_cat.items():
            csv, meta = files[cat]
            rules = {r for r in cat_roles if ROLES[r][1]}
            whole = [r for r in cat_roles if not ROLES[r][1]]
            if rules:
                picked = read_meta(meta, None, rules, stats)
                known.update(picked)
                role = {a: rr for a, (_, rr) in picked.items()}

                def keep(row, role=role):
                    return role.get(row[2])
            else:
                def keep(row, r=whole[0]):
                    return r
            got = sample(lambda csv=csv: iter_ratings(csv, until, stats), keep,
                         {r: opts["max_ood"] for r in cat_roles}, opts["sample_seed"])
            for r in cat_roles:
                out[r] = got.get(r, [])
        return {r: out[r] for r in roles}  # in the order of the ``categories`` option

    def fill_titles(groups: dict[str, list]) -> dict[str, list]:
        """Titles for the kept rows: each meta file is streamed once, for its missing asins."""
        meta_of = {"id": files[BOOKS][1], "ood/time": files[BOOKS][1]}
        meta_of.update({f"ood/product/{r}": files[ROLES[r][0]][1] for r in roles})
        need: dict[Path, set[str]] = {}
        for g, rows in groups.items():
            need.setdefault(meta_of[g], set()).update(r[2] for r in rows if r[2] not in known)
        for meta, asins in need.items():
            if asins:
                known.update(read_meta(meta, asins, None, stats))
        stats.missing_titles = sum(1 for rows in groups.values() for r in rows if r[2] not in known)
        return {g: [(r[0], r[1], r[2], known.get(r[2], ("", None))[0], r[4], r[5]) for r in rows]
                for g, rows in groups.items()}

    return books, product_groups, fill_titles, signatures


# ---------------------------------------------------------------- fixture
def _fixture(folder: Path, rng: np.random.Generator) -> None:
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


# the stream is fixed per fixture name, so adding a fixture changes no other's files
fixtures.register_fixture("amazon2023", _fixture, stream=4)
