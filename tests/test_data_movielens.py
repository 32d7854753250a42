"""MovieLens loader: fixture (always) and the genuine ml-100k files (when present)."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from levi_core.data import cache  # noqa: E402
from levi_core.data import common, fixtures, load_dataset
from levi_core.data.movielens import shared_local_dir

ID = {"action", "comedy", "drama", "romance", "thriller"}
REAL = shared_local_dir()


pytestmark = pytest.mark.usefixtures("fresh_data_cache")  # see conftest.py


def raw_expectation(folder: Path, min_count=200):
    """An independent reading of the raw files: ID count and per-genre OOD counts."""
    names = [line.split("|")[0].lower().replace("'s", "") for line in (folder / "u.genre").read_text().splitlines() if line.strip()]
    genres = {}
    for line in (folder / "u.item").read_bytes().decode("latin-1").splitlines():
        p = line.split("|")
        genres[p[0]] = {names[j] for j, f in enumerate(p[5:]) if f == "1"}
    n_id, ood = 0, Counter()
    n = 0
    for line in (folder / "u.data").read_text().splitlines():
        n += 1
        g = genres[line.split("\t")[1]]
        if g & ID:
            n_id += 1
        else:
            ood.update(g)
    return n, n_id, {k: v for k, v in ood.items() if v >= min_count}


def check_dataset(ds, folder):
    n, n_id, ood = raw_expectation(folder)
    assert ds.task == "regression" and ds.metric == "rmse"
    assert sum(len(ds.splits[r]) for r in ("train", "id_val", "id_test")) == n_id
    assert {r[4:]: len(ds.splits[r]) for r in ds.ood_roles} == ood
    id_ids = set().union(*(ds.splits[r].example_ids.tolist() for r in ("train", "id_val", "id_test")))
    assert len(id_ids) == n_id  # unique, no overlap between train/val/test
    ood_ids = set().union(*(ds.splits[r].example_ids.tolist() for r in ds.ood_roles))
    assert not id_ids & ood_ids
    assert ds.info["id_ratings"] + ds.info["ood_union"] + ds.info["excluded"] == n
    assert len(ood_ids) == ds.info["ood_union"]
    train_movies = {e.split("_m")[1] for e in ds.splits["train"].example_ids}
    for r in ds.ood_roles:
        s = ds.splits[r]
        assert (s.small["movie_id"] == 0).all()  # OOD movies are never in train
        assert not {e.split("_m")[1] for e in s.example_ids} & train_movies
    for r, s in ds.splits.items():
        assert s.labels.dtype == np.float32 and set(np.unique(s.labels)) <= {1, 2, 3, 4, 5}
        for k, v in s.small.items():
            assert v.dtype == np.int32 and v.min() >= 0 and v.max() < ds.vocab_sizes[k], (r, k)
        assert len(s.large["text"]) == len(s)
    return ood


def test_fixture_loads_with_genre_shift():
    ds = fixtures.fixture_dataset("movielens")
    ood = check_dataset(ds, fixtures.fixture_dir("movielens"))
    assert sorted(ood) == ["animation", "children", "horror", "sci-fi"]
    assert "fantasy" in ds.info["ood_genres_below_threshold"]
    tr = ds.splits["train"]
    assert (tr.small["movie_id"] > 0).all() and (tr.small["user_id"] > 0).all()
    # the small model reads D.1's features only: no gender, no genre (it defines the shift)
    assert set(tr.small) == {"user_id", "age_bucket", "occupation", "zip_prefix", "movie_id",
                             "title_tokens"}
    assert tr.small["title_tokens"].shape[1] == 12
    more = fixtures.fixture_dataset("movielens", with_gender=1, with_genres=1)
    assert more.splits["train"].small["genres"].shape[1] == 6 and "gender" in more.vocab_sizes
    assert more.fingerprint == ds.fingerprint  # same examples, more inputs
    texts = np.concatenate([s.large["text"] for s in ds.splits.values()])
    assert any("Café" in t or "Amélie" in t or "Señor" in t or "Über" in t for t in texts)  # Latin-1 decoded
    eid = tr.example_ids[0]
    assert eid.startswith("u") and "_m" in eid
    assert tr.large["text"][0].startswith("When the user id is " + eid[1:].split("_m")[0] + ", the user occupation is ")
    assert tr.large["text"][0].endswith("what can be the user rating on this movie?:")


def test_options_change_shift_and_split():
    base = fixtures.fixture_dataset("movielens", cache=0)
    lower = fixtures.fixture_dataset("movielens", cache=0, min_ood_ratings=100)
    assert set(base.ood_roles) < set(lower.ood_roles)
    other = fixtures.fixture_dataset("movielens", cache=0, split_seed=1)
    assert other.fingerprint != base.fingerprint
    assert len(other.splits["train"]) == len(base.splits["train"])
    frac = fixtures.fixture_dataset("movielens", cache=0, val_frac=0.2, test_frac=0.0)
    assert len(frac.splits["id_test"]) == 0
    assert len(frac.splits["id_val"]) == round(0.2 * base.info["id_ratings"])


def test_deterministic_and_cached():
    a = fixtures.fixture_dataset("movielens", cache=0)
    b = fixtures.fixture_dataset("movielens", cache=0)
    assert a.fingerprint == b.fingerprint
    for r in a.splits:
        np.testing.assert_array_equal(a.splits[r].small["title_tokens"], b.splits[r].small["title_tokens"])
    c = fixtures.fixture_dataset("movielens")  # cached copy equals a fresh build
    before = cache.BUILD_COUNTS.get("movielens", 0)
    # the same files by path (not via fixture=1) hit the same cache entry: not prepared again
    d = load_dataset("movielens:source=files", str(fixtures.fixture_dir("movielens")))
    assert cache.BUILD_COUNTS.get("movielens", 0) == before
    assert a.fingerprint == c.fingerprint == d.fingerprint
    assert d.vocab_sizes == a.vocab_sizes
    np.testing.assert_array_equal(d.splits["train"].large["text"], a.splits["train"].large["text"])


def test_fixture_is_reproducible(tmp_path):
    f1 = fixtures.write_fixture("movielens", tmp_path / "a", seed=3)
    f2 = fixtures.write_fixture("movielens", tmp_path / "b", seed=3)
    f3 = fixtures.write_fixture("movielens", tmp_path / "c", seed=4)
    assert (f1 / "u.data").read_bytes() == (f2 / "u.data").read_bytes()
    assert (f1 / "u.data").read_bytes() != (f3 / "u.data").read_bytes()
    (f1 / "u.item").read_bytes().decode("latin-1")
    with pytest.raises(UnicodeDecodeError):  # really Latin-1, not UTF-8
        (f1 / "u.item").read_bytes().decode("utf-8")


real = pytest.mark.skipif(REAL is None, reason="genuine ml-100k not at ../shared/data/movielens_100k")

TWELVE = {
    "adventure": 1556, "animation": 2059, "children": 2742, "crime": 368, "documentary": 700,
    "film-noir": 597, "horror": 1686, "musical": 1908, "mystery": 463, "sci-fi": 1438,
    "war": 588, "western": 581,
}


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
@real
def test_real_movielens_genre_shift():
    ds = load_dataset("movielens", str(REAL))
    ood = check_dataset(ds, REAL)
    assert len(ds.ood_roles) == 12
    assert ood == TWELVE
    assert ds.info["ood_genres_below_threshold"] == {"fantasy": 160, "unknown": 10}
    assert ds.info["id_ratings"] == 91142 and ds.info["excluded"] == 11
    assert [len(ds.splits[r]) for r in ("train", "id_val", "id_test")] == [72914, 9114, 9114]
    texts = {}
    for s in ds.splits.values():
        texts.update(zip(s.example_ids.tolist(), s.large["text"].tolist()))
    assert texts["u138_m357"] == (
        "When the user id is 138, the user occupation is doctor, the user zipcode is 53211, the "
        "movie title is One Flew Over the Cuckoo's Nest (1975), and the movie id is 357, what "
        "can be the user rating on this movie?:"
    )
    assert ds.vocab_sizes["user_id"] <= 944 and ds.vocab_sizes["occupation"] == 22


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
@real
def test_real_movielens_fingerprint_is_stable():
    a = load_dataset("movielens:cache=0", str(REAL))
    b = load_dataset("movielens", str(REAL))
    assert a.fingerprint == b.fingerprint == "0ccebc7b0c89571e"


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    opts = f"movielens:fixture=1,cache_dir={tmp_path}"
    a = load_dataset(opts)
    (entry,) = [p for p in tmp_path.iterdir() if p.name.startswith("movielens-")]
    assert sorted(p.name for p in entry.iterdir()) == ["data.npz", "meta.json"]
    (entry / "data.npz").write_bytes(b"garbage")
    before = cache.BUILD_COUNTS.get("movielens", 0)
    b = load_dataset(opts)
    assert cache.BUILD_COUNTS["movielens"] == before + 1 and b.fingerprint == a.fingerprint
    c = load_dataset(opts)  # and the rebuilt entry is used again
    assert cache.BUILD_COUNTS["movielens"] == before + 1 and c.fingerprint == a.fingerprint


@real
def test_real_movielens_found_without_data_dir():
    assert load_dataset("movielens").fingerprint == "0ccebc7b0c89571e"


# ---------------------------------------------------------------- time shift (beyond the paper)


def raw_timestamps(folder: Path):
    return {
        f"u{p[0]}_m{p[1]}": int(p[3])
        for p in (line.split("\t") for line in (folder / "u.data").read_text().splitlines())
    }


def check_time_shift(ds, folder, cut):
    stamps = raw_timestamps(folder)
    id_roles = ("train", "id_val", "id_test")
    assert ds.ood_roles == ["ood/time"]
    id_ids = [e for r in id_roles for e in ds.splits[r].example_ids.tolist()]
    ood_ids = ds.splits["ood/time"].example_ids.tolist()
    assert len(id_ids) + len(ood_ids) == len(stamps) and not set(id_ids) & set(ood_ids)
    assert all(stamps[e] < cut for e in id_ids) and all(stamps[e] >= cut for e in ood_ids)
    assert ds.info["time_cut"] == cut
    for r, s in ds.splits.items():
        assert s.labels.dtype == np.float32 and len(s.large["text"]) == len(s)
        for k, v in s.small.items():
            assert v.dtype == np.int32 and v.min() >= 0 and v.max() < ds.vocab_sizes[k], (r, k)
    return len(id_ids), len(ood_ids)


def test_fixture_time_shift():
    ds = fixtures.fixture_dataset("movielens", shift="time")
    folder = fixtures.fixture_dir("movielens")
    t = sorted(raw_timestamps(folder).values())
    cut = t[len(t) - round(0.2 * len(t))]
    n_id, n_ood = check_time_shift(ds, folder, cut)
    assert n_ood == sum(1 for x in t if x >= cut) and abs(n_ood - 0.2 * len(t)) <= 5
    # the same sentence for the same rating as under the genre shift
    genre = fixtures.fixture_dataset("movielens")
    text = {e: x for s in genre.splits.values() for e, x in zip(s.example_ids, s.large["text"])}
    s = ds.splits["ood/time"]
    assert all(text.get(e, x) == x for e, x in zip(s.example_ids, s.large["text"]))
    lo, hi = ds.info["date_ranges"]["ood/time"]
    assert lo <= hi and ds.info["date_ranges"]["train"][1] <= lo
    given = fixtures.fixture_dataset("movielens", shift="time", time_cut=t[len(t) // 2], cache=0)
    check_time_shift(given, folder, t[len(t) // 2])
    frac = fixtures.fixture_dataset("movielens", shift="time", time_ood_frac=0.5, cache=0)
    assert frac.info["time_cut"] == t[len(t) // 2]


def test_time_shift_bad_options():
    from levi_core.errors import ConfigError, DataError

    with pytest.raises(DataError, match="leaves no OOD ratings"):
        fixtures.fixture_dataset("movielens", shift="time", time_cut=2_000_000_000, cache=0)
    with pytest.raises(DataError, match="leaves no ID ratings"):
        fixtures.fixture_dataset("movielens", shift="time", time_cut=1, cache=0)
    with pytest.raises(DataError, match="use genre"):
        fixtures.fixture_dataset("movielens", shift="users", cache=0)
    with pytest.raises(ConfigError, match="time_ood_frac"):
        fixtures.fixture_dataset("movielens", shift="time", time_ood_frac=1.5, cache=0)


def test_genre_shift_is_the_default_and_unchanged():
    a = fixtures.fixture_dataset("movielens")
    b = fixtures.fixture_dataset("movielens", shift="genre")
    assert a.fingerprint == b.fingerprint == "e06ab9daf606c648"


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
@real
def test_real_movielens_time_shift():
    ds = load_dataset("movielens:shift=time", str(REAL))
    n_id, n_ood = check_time_shift(ds, REAL, 889237269)  # 1998-03-07
    assert (n_id, n_ood) == (79999, 20001)
    assert [len(ds.splits[r]) for r in ("train", "id_val", "id_test")] == [63999, 8000, 8000]
    assert ds.info["date_ranges"]["ood/time"] == ["1998-03-07", "1998-04-22"]
    assert ds.fingerprint == "715cd1ec61541a82"
    # what the table's caption says: the OOD users are cold-start, the OOD movies are not
    ood = ds.splits["ood/time"].small
    assert round(float((ood["user_id"] == 0).mean()), 2) == 0.85
    assert round(float((ood["movie_id"] == 0).mean()), 2) == 0.01


def test_time_shift_table_shows_the_small_model_alone_where_real_data_runs():
    """A4 is a reference row of the time-shift table under cpu and paper, above the classic
    recommenders as in Table 1; smoke plans no A4 job, so CI does not pay for it."""
    from bench.jobs import plan
    from bench.specs import get_table

    spec = get_table("movielens_time")
    grid = spec.sections[0]
    assert grid.references_for("cpu")[:2] == ("a4", "ref/mean")
    assert grid.references_for("smoke")[0] == "ref/mean"
    assert Counter(j.method for j in plan(spec, "cpu"))["a4"] == 12  # 4 lrs x 3 seeds
    assert "a4" not in {j.method for j in plan(spec, "smoke")}
