"""Half-tuning (``ht``) without re-running the frozen lower half.

``ht`` trains blocks ``k = L // 2 .. L - 1``, the final norm and the head; blocks ``0 .. k - 1``
and the embeddings keep their pre-trained weights. Their output (the full-sequence hidden state
entering block ``k``, the *boundary*) is therefore the same in every ``ht`` run of a dataset,
whatever the seed or learning rate, and so are the pooled states ``0 .. k`` that LEVI, A3 and
Table 14 read from an ``ht`` model. ``FrozenLower`` computes both once per (checkpoint,
max_len) for every distinct example of the evaluated splits, keeps them under
``<cache_dir>/boundary/<key>/`` (float32 ``.npy`` files read memory-mapped: the training split
of MovieLens is gigabytes) in two parts, the training split's and the evaluation splits',
each named by its own splits' fingerprint: under a per-seed training draw the seeds share the
evaluation part and each builds only its drawn rows. It then

* trains on ``{"h": boundary rows, "mask", "y"}`` with only the tuned blocks in the program
  (``apply``): per step the frozen blocks cost nothing, forward or backward;
* predicts, and writes the layer states dependants read, by running only the tuned blocks on
  the boundary and prepending the stored lower states;
* gives the *pre-trained* model's layer states (the feature cache's entry for LP, LEVI on the
  pre-trained model, Fig. 4) the same way, with the pre-trained upper blocks, when the boundary
  is already stored or being built (``FrozenLower.if_stored``): in a table with ``ht`` the
  lower half then runs once, not twice.

The numbers equal the full path's up to float rounding (the boundary is computed in other
batch shapes than the training batches; ``tests/test_engine_perf.py``). Entries are built under
the feature cache's claim (one builder, the others wait) and published by renaming a finished
folder. Without a ``cache_dir`` (tests, one-off calls) there is no shortcut.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from levi_core import features as feature_cache
from levi_core import progress
from levi_core.backbones.outputs import default_pooling, pool
from levi_core.data.base import fingerprint_splits
from levi_core.engines.base import batches, take
from levi_core.engines.forward import SEQ_MULTIPLE, _forward_top, _lower, _top, distinct_rows, gather_rows

_LOADED: dict[str, "StoredPart"] = {}  # folder -> its part, read once per process
# Above this the boundary is not stored and ht runs the whole model: the boundary holds every
# token's state of every distinct example (examples x tokens x width floats), which fits for
# MovieLens-sized text sets and not for ImageNet-sized image sets.
MAX_BYTES = 24 << 30


class StoredPart:
    """One stored part of a boundary (the training split, or the evaluation splits): ``h``
    [U, T, D] float32 (memory-mapped), ``mask`` [U, T] (text), ``pooled`` [k + 1, U, D] float16
    and, per role, its rows' indices into the part's U distinct examples."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.h = np.load(folder / "h.npy", mmap_mode="r")
        self.mask = np.load(folder / "mask.npy") if (folder / "mask.npy").exists() else None
        self.pooled = np.load(folder / "pooled.npy", mmap_mode="r")
        with np.load(folder / "index.npz", allow_pickle=False) as z:
            self.index = {k.replace("__", "/"): z[k] for k in z.files}


class JoinedRows:
    """The rows of the parts' ``h`` read as one array (part after part), narrower parts padded
    with zeros to the widest one's tokens (their mask is 0 there): an index array gathers rows
    from whichever parts hold them, so no part is copied."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays
        self.starts = np.cumsum([0] + [len(a) for a in arrays])
        width = max(a.shape[1] for a in arrays)
        self.shape = (int(self.starts[-1]), width) + tuple(arrays[0].shape[2:])
        self.dtype = arrays[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        out = np.zeros((len(rows),) + self.shape[1:], self.dtype)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        for i, a in enumerate(self.arrays):
            take_here = part == i
            if take_here.any():
                out[take_here, : a.shape[1]] = a[rows[take_here] - self.starts[i]]
        return out


class Boundary:
    """The boundary of one dataset, from its stored parts (the training part first): ``h``
    [U, T, D] (``JoinedRows``), ``mask`` [U, T] (text), ``pooled`` [k + 1, U, D] float16 and,
    per role, its rows' indices into the U rows; ``train`` is the training part itself, which
    ht trains on."""

    def __init__(self, parts: list[StoredPart]):
        self._parts, self.train = parts, parts[0]
        self.h = JoinedRows([p.h for p in parts])
        T = self.h.shape[1]
        self.mask = None
        if parts[0].mask is not None:
            self.mask = np.concatenate([np.pad(p.mask, ((0, 0), (0, T - p.mask.shape[1])))
                                        for p in parts])
        self.index = {r: idx + start for p, start in zip(parts, self.h.starts)
                      for r, idx in p.index.items()}

    @functools.cached_property
    def pooled(self) -> np.ndarray:
        """Read only when layer states are asked for: an ht training run never needs them."""
        return np.concatenate([np.asarray(p.pooled) for p in self._parts], axis=1)


class FrozenLower:
    def __init__(self, engine, k: int, boundary: Boundary):
        self.e, self.k, self.b = engine, k, boundary
        self.cache_key = ("transformer-top", engine.config, engine.n_out, k, engine.compute_dtype)

    @staticmethod
    def for_engine(engine, mode: str) -> "FrozenLower | None":
        where = _applies(engine)
        if mode != "half" or where is None:
            return None
        k, parts = where
        boundary = _boundary(engine, k, parts)
        return None if boundary is None else FrozenLower(engine, k, boundary)

    @staticmethod
    def if_stored(engine) -> "FrozenLower | None":
        """The boundary of ``engine``'s dataset when it is stored or being built (an ``ht`` job
        holds its claim; then this waits for it), else None: the pre-trained model's layer
        states then run only the upper blocks on it, instead of computing the lower half (half
        the blocks, so about half of that pass) a second time; ``bench/benchmarks/ht_speed.py``
        measures both. A table without ``ht`` never builds a boundary for this."""
        where = _applies(engine)
        if where is None:
            return None
        k, parts = where
        for roles in parts:  # every part stored, or being built
            folder, lock = _boundary_paths(engine, k, roles)
            if str(folder) not in _LOADED and not (folder / "index.npz").exists() and not lock.exists():
                return None
        boundary = _boundary(engine, k, parts)
        return None if boundary is None else FrozenLower(engine, k, boundary)

    # ------------------------------------------------------------ training
    def data(self) -> dict[str, np.ndarray]:
        d = {"h": self.b.train.h, "y": self.e.ds.splits["train"].labels}
        if self.b.train.mask is not None:
            d["mask"] = self.b.train.mask
        return d

    def apply(self, params, extra, batch):
        e = self.e
        out = _top(e.module, e.config, self.k, e.compute_dtype, params["body"], batch)
        last = pool(out.hidden_states[-1].astype(jnp.float32), out.mask,
                    default_pooling(e.config.family))
        return e.head.apply({"params": params["head"]}, last)[:, None, :], extra

    # ------------------------------------------------------------ evaluation
    def predict(self, params, roles, keep_states_in: Path | None = None, parts: Path | None = None):
        """Predictions of ``roles`` (and their layer states, with ``keep_states_in``), running
        the tuned blocks only on the boundary rows those roles hold."""
        return self.e.predict_with(self.forward_roles, params, roles, keep_states_in, parts)

    def forward_roles(self, params, roles, want_states: bool, parts: Path | None = None
                      ) -> dict[str, tuple]:
        """role -> (outputs [N, O], states [L + 1, N, D] float16 or None), as
        ``TransformerEngine.forward_roles`` gives them, from the upper blocks on the boundary:
        states ``0 .. k`` are the stored ones (the lower blocks are frozen), ``k + 1 .. L``
        come from ``params``. With ``parts``, finished chunks are kept there and an
        interrupted pass resumes from them (``features.run_in_chunks``)."""
        e, b = self.e, self.b
        roles = list(roles)
        needed = np.unique(np.concatenate([b.index[r] for r in roles]))
        order = needed
        if b.mask is not None:  # length buckets, as the boundary was built
            order = needed[np.argsort(b.mask[needed].sum(axis=1), kind="stable")]
        bs = e.eval_batch_size
        fn = functools.partial(_forward_top, e.module, e.config, e.head, self.k, e.compute_dtype,
                               params)
        n = len(b.h)
        out_u = np.zeros((n, e.n_out), np.float32)
        st_u = None
        if want_states:
            st_u = np.zeros((e.num_layers + 1, n, b.h.shape[-1]), feature_cache.STORE_DTYPE)
            st_u[: self.k + 1] = b.pooled
        label = "upper blocks on the stored lower half" if len(order) > 20 * bs else None
        chunk = feature_cache.chunk_size(bs)
        if parts is not None:  # a chunk's rows depend on these: another pass, another folder
            parts = Path(parts) / f"upper-n{len(order)}-bs{bs}-c{chunk}-s{int(want_states)}"

        def compute(c_lo: int, c_hi: int) -> dict[str, np.ndarray]:
            outs, sts = [], []
            for lo, hi in batches(c_hi - c_lo, bs):
                sel = np.sort(order[c_lo + lo:c_lo + hi])  # ascending: a cheaper memory-map read
                x = {"h": np.asarray(b.h[sel])}
                if b.mask is not None:
                    x["mask"] = b.mask[sel]
                o, st = fn(e.trim_batch(take(x, 0, hi - lo, bs)))
                outs.append(np.asarray(o)[: hi - lo])
                if st_u is not None:
                    sts.append(np.asarray(st)[:, : hi - lo].astype(feature_cache.STORE_DTYPE))
                pbar.update(hi - lo)
            return {"out": np.concatenate(outs), **({"states": np.concatenate(sts, axis=1)}
                                                    if sts else {})}

        def place(c_lo: int, c_hi: int, arrays) -> None:
            sel = np.concatenate([np.sort(order[c_lo + lo:c_lo + hi])
                                  for lo, hi in batches(c_hi - c_lo, bs)])
            out_u[sel] = arrays["out"]
            if st_u is not None:
                st_u[self.k + 1:, sel] = arrays["states"]

        with progress.bar(label, total=len(order), unit="example") as pbar:
            feature_cache.run_in_chunks(parts, len(order), chunk, compute, place, reused=pbar.update)
        return {r: (out_u[b.index[r]], st_u[:, b.index[r]] if want_states else None) for r in roles}


def _applies(engine) -> tuple[int, list[list[str]]] | None:
    """(k, the boundary's parts: the training split's roles, then the evaluation splits') when
    ``engine`` can have a boundary: a cache folder, at least two blocks, the training split
    among the evaluated roles, no LoRA; else None."""
    k = engine.config.num_layers // 2
    roles = list(engine.ds.eval_roles)
    if engine.cache_dir is None or k < 1 or "train" not in roles or engine.config.lora_rank:
        return None
    evaluated = [r for r in roles if r != "train"]
    return k, [["train"]] + ([evaluated] if evaluated else [])


def _boundary_paths(engine, k: int, roles: list[str]) -> tuple[Path, Path]:
    """(folder, claim lock) of the boundary part holding ``roles``, named by those splits'
    fingerprint (not the dataset's): a part is shared by every dataset holding the same
    splits, so the seeds' draws share the evaluation part."""
    fingerprint = fingerprint_splits({r: engine.ds.splits[r] for r in roles})
    key = feature_cache.cache_key(engine.states_key("boundary", fingerprint, boundary=k,
                                                    roles=roles))
    root = Path(engine.cache_dir) / "boundary"
    return root / key, root / f"{key}.lock"


def _boundary(engine, k: int, parts: list[list[str]]) -> Boundary | None:
    stored = []
    for roles in parts:
        folder, lock = _boundary_paths(engine, k, roles)
        if str(folder) not in _LOADED:
            built = feature_cache.build_once(lock, (folder / "index.npz").exists,
                                             lambda: _build(engine, k, roles, folder))
            if built is False:  # not worth a boundary here: the full path runs
                return None
            _LOADED[str(folder)] = StoredPart(folder)
        stored.append(_LOADED[str(folder)])
    return Boundary(stored)


def _build(engine, k: int, roles: list[str], folder: Path) -> bool:
    """Compute and publish one part of the boundary; False when the training split's examples
    are not distinct (ht trains on the part's rows in order) or the part would pass
    ``MAX_BYTES`` (then the full path runs)."""
    ds = engine.ds
    xs = [engine.inputs(r) for r in roles]
    src, row, inverse = distinct_rows([ds.splits[r].example_ids for r in roles], xs)
    if roles == ["train"] and not np.array_equal(inverse[0], np.arange(len(ds.splits["train"]))):
        return False
    n = len(src)
    text = "mask" in xs[0]
    if text:
        starts = np.cumsum([0] + [len(x["mask"]) for x in xs])[:-1]
        lengths = np.concatenate([x["mask"].sum(axis=1) for x in xs])[starts[src] + row]
        # the longest row, rounded up as batches are
        T = min(xs[0]["mask"].shape[1], -(-max(1, int(lengths.max())) // SEQ_MULTIPLE) * SEQ_MULTIPLE)
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.arange(n)
    if n * (T if text else engine.config.seq_len) * engine.config.hidden_size * 4 > MAX_BYTES:
        return False
    bparams = engine.pretrained_body()
    bs = engine.eval_batch_size
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=root))
    try:
        h = pooled = None
        mask = np.zeros((n, T), np.int32) if text else None
        with progress.bar("ht boundary (frozen lower blocks)" if n > 20 * bs else None,
                          total=n, unit="example") as pbar:
            for lo, hi in batches(n, bs):
                sel = order[lo:hi]
                batch = engine.trim_batch(take(gather_rows(xs, src[sel], row[sel]), 0, hi - lo, bs))
                hb, pb = _lower(engine.module, engine.config, k, engine.compute_dtype, bparams, batch)
                hb, pb = np.asarray(hb)[: hi - lo], np.asarray(pb)[:, : hi - lo]
                if h is None:
                    T_all = T if text else hb.shape[1]
                    h = np.lib.format.open_memmap(tmp / "h.npy", "w+", np.float32, (n, T_all, hb.shape[2]))
                    pooled = np.zeros((pb.shape[0], n, pb.shape[2]), feature_cache.STORE_DTYPE)
                h[np.sort(sel), : hb.shape[1]] = hb[np.argsort(sel)]
                pooled[:, sel] = pb
                if text:
                    mask[sel, : batch["mask"].shape[1]] = batch["mask"][: hi - lo]
                pbar.update(hi - lo)
        h.flush()
        del h
        np.save(tmp / "pooled.npy", pooled)
        if text:
            np.save(tmp / "mask.npy", mask)
        np.savez(tmp / "index.npz", **{r.replace("/", "__"): inv for r, inv in zip(roles, inverse)})
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True
