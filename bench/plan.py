"""``bench plan``: what a table costs on a named accelerator, and whether each program fits,
before anyone rents one.

For every distinct program a table runs under a preset (a backbone x a kind of program x a
batch shape x the compute dtype) the plan lowers and compiles the project's own program on
abstract inputs (``jax.ShapeDtypeStruct``: nothing is allocated, no weights are read) and reads
XLA's analyses of it: ``cost_analysis()`` (FLOPs, bytes accessed) and ``memory_analysis()``
(arguments, outputs, temporaries, generated code). The programs are the ones jobs run:

* ``train/all`` (``ft``, ``fs``, ``lp_ft``, ``a1``), ``train/half`` (``ht``), ``train/lora``
  (``lora``): one step of ``levi_core.training.fit`` with the engine's ``apply`` and the tuning
  mode's optimizer mask, at the preset's batch (``training.lower_step``);
* ``forward``: the evaluation / layer-state pass (``engines.forward._forward``) at the
  evaluation batch;
* ``heads``: one step of LEVI's ``TaskHeads`` (small model + an adapting layer per state) at the
  training batch: the bound used for every job that trains on cached states (``lp``, ``levi*``,
  ``a3``-``a5``, ``layer/<k>``; the others are smaller).

A training step whose peak exceeds the device's usable memory (or ``--max-device-memory``) is
planned, as ``bench run`` runs it, as gradient accumulation over the fewest equal micro-batches
that fit (``training.choose_split``; the job's record says which in ``extras.batch_split``).

Time: a step takes ``max(FLOPs / (MFU x peak), bytes / bandwidth)``; a job is its steps
(``epochs`` x training rows / batch) plus one forward pass over every distinct evaluated example
of its dataset (the predictions and the layer states kept for dependants), plus a fixed cost
per job (``JOB_OVERHEAD_S``: start, loading, compiling); a dataset's frozen pre-trained states
are computed once and shared. Jobs run one per device; a table's wall time
schedules each dependency level (``lp`` before ``lp_ft``, ``ht`` before ``levi``, ...) on N
devices, longest job first.

Limits, stated where they apply:

* The step is compiled by XLA's CPU backend here. Its FLOPs are the model's and carry over to
  any device; its memory figures are the CPU buffer assignment, which differs from a GPU's
  (other fusions, cuDNN/cuBLAS workspaces, the allocator's fragmentation) and a TPU's (layouts
  padded to 8 x 128 tiles, bfloat16 matmul operands). Treat the peaks as +/- 25% and keep the
  usable fraction below 1 (``bench.devices.USABLE_FRACTION``).
* XLA counts a loop body once. Each training program here is one step (a scan of length 1) and
  each micro-batched step's accumulation scan is scaled by its trip count, so the FLOPs are per
  step.
* Text programs are planned at ``max_len`` tokens: an upper bound for memory; jobs cut batches
  to their longest row (MovieLens' 50-78 token sentences run at 64-80), so time is overstated.
* ``ht`` is planned on the whole model with the lower half frozen; with its stored boundary
  (``engines.half``, datasets under 24 GB of boundary) only the upper blocks run.
* Vision programs are planned once for every vision dataset, with ImageNet's 1000-class head
  (Retinopathy's 5-class one is 0.8M parameters smaller).
* Dataset sizes at paper scale are in ``DATA`` (measured for MovieLens; the loaders' caps or the
  public sizes elsewhere, each with its source).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from levi_core.errors import ConfigError

from bench.devices import DEVICES, Device, get_device

DEFAULT_MFU = 0.35
# a job's fixed cost on the device's host: process start, data and weights loading, compiling
# (mostly read back from the compilation cache), writing predictions; short jobs are mostly this
JOB_OVERHEAD_S = 60.0
OPTIMIZE = True  # compile as the jobs do (``ProgramPlanner``); tests turn it off for speed  # model FLOPs utilisation assumed when no gpu_check measurement is given


@dataclass(frozen=True)
class DataSize:
    """A dataset at the preset's scale: training rows, id_val rows, distinct evaluated examples
    (every role a trained model predicts, each example once), and where the figures come from."""

    train: int
    id_val: int
    evaluated: int
    source: str


# paper preset. Fixture- and sample-sized presets read their sizes from the data (``sizes``).
DATA = {
    "movielens": DataSize(72_914, 9_114, 99_989, "measured on the genuine ml-100k files"),
    "movielens_time": DataSize(64_000, 8_000, 100_000, "ml-100k, last 20% of ratings OOD (approx.)"),
    "amazon": DataSize(80_000, 10_000, 260_000,
                       "the loader's caps: 100,000 ID reviews split 80/10/10, at most 20,000 per "
                       "OOD set (time + 7 categories): an upper bound"),
    "retinopathy": DataSize(14_050, 1_756, 35_126,
                            "Kaggle's 35,126 labelled images; the ID (>= 2000 px) share assumed half"),
    "imagenet": DataSize(40_711, 5_089, 98_389,
                         "ImageNet-Sketch 50,889 split 80/10/10; A 7,500, R 30,000, V2 10,000"),
}
# n_out, task and the small model's categorical inputs (name, vocabulary, positions) per dataset
TASKS = {
    "movielens": ("regression", 1, (("user_id", 944, 1), ("age_bucket", 8, 1), ("occupation", 22, 1),
                                    ("zip_prefix", 800, 1), ("movie_id", 1683, 1),
                                    ("title_tokens", 3000, 12))),
    "amazon": ("regression", 1, (("customer_id", 80_000, 1), ("product_id", 80_000, 1),
                                 ("title_tokens", 30_000, 16))),
    "retinopathy": ("classification", 5, ()),
    "imagenet": ("classification", 1000, ()),
}
TASKS["movielens_time"] = TASKS["movielens"]

# A method's program follows its declared kind (``levi_core.methods.Kind``): a large-model
# training runs ``train/<its tuning mode>``, a small-model one LEVI's heads step.
# jobs whose training program needs the pre-trained model's states (computed once per dataset)
NEEDS_PRETRAINED_STATES = ("lp", "levi/pretrained")


# ----------------------------------------------------------------------------- one program
@dataclass
class ProgramCost:
    """XLA's figures for one program (per call), and the batch split chosen for it."""

    key: str
    backbone: str
    kind: str
    batch: int
    input: str
    dtype: str
    flops: float
    bytes_accessed: float
    argument_bytes: int
    output_bytes: int
    temp_bytes: int
    code_bytes: int
    peak_bytes: int
    peak_unsplit_bytes: int
    micro_batches: int = 1
    fits: bool = True
    compile_s: float = 0.0

    @property
    def split(self) -> str:
        return "none" if self.micro_batches == 1 else f"accumulate x{self.micro_batches}"

    def seconds(self, device: Device, mfu: float) -> float:
        return max(self.flops / (mfu * device.peak(self.dtype)), self.bytes_accessed / device.bandwidth)


def _analyse(lowered) -> tuple[dict, Any, float]:
    t0 = time.perf_counter()
    compiled = lowered.compile()
    secs = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per device
        cost = cost[0] if cost else {}
    return dict(cost or {}), compiled, secs


class _Shapes:
    """What ``TransformerEngine`` reads of a dataset, without its data: a plan knows shapes only."""

    def __init__(self, name: str, modality: str, batch_size: int):
        task, n_out, small = TASKS[name]
        if modality == "vision":  # one program for every vision dataset: the largest head
            n_out = max(t[1] for t in TASKS.values() if t[0] == "classification")
        self.name, self.modality, self.task = name, modality, task
        self.num_classes = n_out if task == "classification" else None
        self.batch_size = batch_size
        self.small_inputs = small
        self.vocab_sizes = {k: v for k, v, _ in small}


def _sds(shape, dtype):
    import jax

    return jax.ShapeDtypeStruct(tuple(int(s) for s in shape), dtype)


_COMPILED: dict[tuple, "ProgramCost"] = {}


class ProgramPlanner:
    """Compiles each distinct program once (``cache``) and chooses its batch split."""

    def __init__(self, limit: int | None, log=print, optimize: bool | None = None):
        # optimize: XLA's backend optimisations, as the transformer engine compiles its
        # training (False compiles faster, for tests; the figures move a little)
        self.limit, self.log = limit, log
        self.optimize = OPTIMIZE if optimize is None else optimize
        self.cache: dict[tuple, ProgramCost] = {}

    def engine(self, dataset: str, modality: str, s):
        from levi_core.engines.transformer import TransformerEngine

        bs = {"movielens": 200, "movielens_time": 200, "amazon": 100}.get(dataset, 512)
        return TransformerEngine(_Shapes(dataset, modality, bs), s)

    def inputs(self, e, rows: int, with_y: bool) -> dict:
        import jax.numpy as jnp

        if e.modality == "vision":
            c = e.config
            out = {"image": _sds((rows, c.image_size, c.image_size, c.channels), jnp.uint8)}
        else:
            T = e.s.max_len
            out = {"ids": _sds((rows, T), jnp.int32), "mask": _sds((rows, T), jnp.int32)}
        if with_y:
            out["y"] = _sds((rows,), jnp.float32 if e.task == "regression" else jnp.int32)
        return out

    def params(self, e):
        import jax.numpy as jnp

        from levi_core.backbones.weights import param_shapes

        D = e.config.hidden_size
        return {"body": param_shapes(e.config),
                "head": {"kernel": _sds((D, e.n_out), jnp.float32), "bias": _sds((e.n_out,), jnp.float32)}}

    def program(self, e, kind: str) -> ProgramCost:
        s = e.s
        what = (e.config.image_size if e.modality == "vision" else s.max_len)
        batch = e.eval_batch_size if kind == "forward" else e.batch_size
        key = (s.backbone, kind, batch, what, e.compute_dtype, e.n_out,
               e.ds.name if kind == "heads" and e.modality == "text" else "")
        if key not in self.cache:
            t0 = time.perf_counter()
            self.cache[key] = self._build(e, kind, batch)
            self.log(f"  planned {self.cache[key].key}: {time.perf_counter() - t0:.0f} s")
        return self.cache[key]

    def _build(self, e, kind: str, batch: int) -> ProgramCost:
        import jax

        from levi_core import training

        s = e.s
        label = (f"{e.config.image_size} px" if e.modality == "vision" else f"{s.max_len} tokens")
        name = f"{s.backbone} {kind} batch {batch} x {label} {e.compute_dtype}"
        if kind == "heads" and e.modality == "text":
            name += f" ({e.ds.name})"
        if kind == "forward":
            from levi_core.engines.forward import _forward

            out = self._cost(name, s.backbone, kind, batch, label, e.compute_dtype, lambda: _forward.lower(
                e.module, e.config, e.head, self.params(e), self.inputs(e, batch, False),
                dtype=e.compute_dtype))
            out.fits = self.limit is None or out.peak_bytes <= self.limit
            return out
        if kind == "heads":
            # the small CNN's batch norm then normalises each micro-batch by its own statistics
            # (``training.check_micro_batches``): the split is planned as ``bench run`` runs it
            heads = self._heads(e, batch)
            step = lambda k: lambda: training.lower_step(  # noqa: E731
                heads[0], heads[1], heads[2], heads[3], e.task, e.optimizer, None, k,
                optimize=self.optimize)
            return self._split(name, s.backbone, kind, batch, label, e.compute_dtype, step)
        params = self.params(e)
        if kind == "train/lora":
            params = jax.eval_shape(lambda p: e.add_lora(p, 0), params)
        mode = {"train/all": "all", "train/half": "half", "train/lora": "lora"}[kind]
        labels = e.labels(params, mode)
        data = self.inputs(e, batch, True)
        return self._split(name, s.backbone, kind, batch, label, e.compute_dtype,
                           lambda k: lambda: training.lower_step(
                               e.apply, params, {}, data, e.task, e.optimizer, labels, k,
                               optimize=self.optimize))

    def _split(self, name, backbone, kind, batch, label, dtype, step) -> ProgramCost:
        """The program of a training step split as ``bench run`` would on this device:
        ``step(k)`` lowers it as ``k`` micro-batches (``training.choose_split``)."""
        from levi_core import training

        runs: dict[int, ProgramCost] = {}

        def peak_of(k: int) -> int:
            runs[k] = self._cost(name, backbone, kind, batch, label, dtype, step(k), k)
            return runs[k].peak_bytes

        split = training.choose_split(peak_of, batch, self.limit)
        out = runs[split.micro_batches]
        out.micro_batches, out.fits = split.micro_batches, split.fits
        out.peak_unsplit_bytes = split.peak_unsplit
        out.compile_s = sum(r.compile_s for r in runs.values())
        return out

    def _heads(self, e, batch: int):
        import jax
        import jax.numpy as jnp

        from levi_core.models.small import TaskHeads

        model = TaskHeads(small=e.small_model(), adapter_hidden=e.adapter_hidden, n_out=e.n_out,
                          out_bias=0.0)
        D = e.config.hidden_size
        states = tuple(_sds((batch, D), jnp.float32) for _ in e.levi_layers)
        if e.modality == "vision":
            small = {"image": _sds((batch, e.config.image_size, e.config.image_size, 3), jnp.uint8)}
        else:
            small = {k: _sds((batch,) if n == 1 else (batch, n), jnp.int32)
                     for k, _, n in e.ds.small_inputs}
        variables = jax.eval_shape(lambda sm, st: model.init(jax.random.PRNGKey(0), sm, st, False),
                                   small, states)
        params = variables["params"]
        extra = {k: v for k, v in variables.items() if k != "params"}
        keys = sorted(small)

        def apply_fn(p, ex, b):
            sm = {k: b[f"small.{k}"] for k in keys}
            sts = tuple(b[f"state.{j}"] for j in range(len(states)))
            if ex:
                return model.apply({"params": p, **ex}, sm, sts, train=True, mutable=list(ex))
            return model.apply({"params": p}, sm, sts, train=True), ex

        data = {**{f"small.{k}": v for k, v in small.items()},
                **{f"state.{j}": a for j, a in enumerate(states)},
                "y": _sds((batch,), jnp.float32 if e.task == "regression" else jnp.int32)}
        return apply_fn, params, extra, data

    def _cost(self, name, backbone, kind, batch, label, dtype, lower, micro: int = 1) -> ProgramCost:
        """The figures of one compiled program (``lower()`` gives it lowered); a program is
        compiled once per process, whichever device's plan asks (only the split differs)."""
        import dataclasses

        key = (name, micro, self.optimize)
        if key not in _COMPILED:
            _COMPILED[key] = self._compile(name, backbone, kind, batch, label, dtype, lower(), micro)
        return dataclasses.replace(_COMPILED[key])

    def _compile(self, name, backbone, kind, batch, label, dtype, lowered, micro: int) -> ProgramCost:
        from levi_core import training

        cost, compiled, secs = _analyse(lowered)
        m = compiled.memory_analysis()
        flops = float(cost.get("flops", 0.0))
        nbytes = float(cost.get("bytes accessed", 0.0))
        if micro > 1:  # XLA counts the accumulation scan's body once: scale it to the step
            flops, nbytes = flops * micro, nbytes * micro
        peak = training.peak_bytes(compiled)
        return ProgramCost(name, backbone, kind, batch, label, dtype, flops, nbytes,
                           int(m.argument_size_in_bytes), int(m.output_size_in_bytes),
                           int(m.temp_size_in_bytes), int(m.generated_code_size_in_bytes),
                           peak, peak, micro, True, secs)


# ------------------------------------------------------------------------------ a table
@dataclass
class JobCost:
    dataset: str
    method: str
    count: int
    seconds_each: float
    programs: list[str]
    split: str


@dataclass
class TablePlan:
    table: str
    preset: str
    device: str
    n_devices: int
    mfu: float
    overhead_s: float = JOB_OVERHEAD_S
    compute_s: float = 0.0  # the device-seconds of the programs, without the fixed costs
    jobs: list[JobCost] = field(default_factory=list)
    shared: list[JobCost] = field(default_factory=list)  # the pre-trained states, once per dataset
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def device_s(self) -> float:
        return sum(j.count * j.seconds_each for j in self.jobs + self.shared)


def small_model_job(method: str) -> bool:
    """Whether a heads job trains LEVI's small model (lp, a3 and layer/<k> do not)."""
    return not (method in ("lp", "a3") or method.startswith("layer/"))


def _levels(methods: Iterable[str]) -> dict[str, int]:
    """Dependency depth of each method (0: depends on nothing)."""
    from levi_core.methods import get_method

    depth: dict[str, int] = {}

    def d(m: str) -> int:
        if m not in depth:
            deps = get_method(m).depends_on
            depth[m] = 1 + max((d(x) for x in deps), default=-1)
        return depth[m]

    for m in methods:
        d(m)
    return depth


def _schedule(durations: list[float], n: int) -> float:
    """Makespan of independent jobs on n devices, longest first onto the least loaded."""
    loads = [0.0] * max(1, n)
    for t in sorted(durations, reverse=True):
        i = loads.index(min(loads))
        loads[i] += t
    return max(loads) if durations else 0.0


def plan_table(table: str, preset: str, device: Device, n_devices: int, mfu: float,
               planner: ProgramPlanner, overhead_s: float = JOB_OVERHEAD_S
               ) -> tuple[TablePlan, list[ProgramCost]]:
    from levi_core.methods import Kind, get_method

    from bench.jobs import plan as plan_jobs
    from bench.presets import get_preset
    from bench.specs import get_table

    spec = get_table(table)
    settings = get_preset(preset).typed_settings()
    jobs = plan_jobs(spec, preset)
    out = TablePlan(table, preset, device.name, n_devices, mfu, overhead_s=overhead_s)
    used: dict[str, ProgramCost] = {}
    counts: dict[tuple[str, str], int] = {}
    for j in jobs:
        counts[(j.dataset, j.method)] = counts.get((j.dataset, j.method), 0) + 1
    datasets = sorted({j.dataset for j in jobs})
    per_job: dict[tuple[str, str], float] = {}
    for ds_id in datasets:
        logical = ds_id.partition(":")[0]
        if ds_id.startswith("movielens:shift=time"):
            logical = "movielens_time"
        if logical not in TASKS:
            out.notes.append(f"{ds_id}: not a large-model dataset; its jobs are counted, not costed")
            continue
        size = sizes(logical, ds_id, preset)
        modality = "vision" if logical in ("retinopathy", "imagenet") else "text"
        s = settings.for_modality(modality)
        e = planner.engine(logical, modality, s)
        fwd = planner.program(e, "forward")
        used[fwd.key] = fwd
        eval_s = math.ceil(size.evaluated / fwd.batch) * fwd.seconds(device, mfu)
        steps = e.epochs * max(1, size.train // e.batch_size)
        head_steps = e.head_epochs * max(1, size.train // e.batch_size)
        methods = {m for (d, m) in counts if d == ds_id}
        if methods & set(NEEDS_PRETRAINED_STATES):
            out.shared.append(JobCost(ds_id, "(pre-trained states)", 1, eval_s, [fwd.key], "none"))
            out.compute_s += eval_s
        for m in sorted(methods):
            meth = get_method(m)
            if meth.kind is Kind.TRAINS_LARGE:
                p = planner.program(e, f"train/{meth.tuning}")
                used[p.key] = p
                secs, progs, split = steps * p.seconds(device, mfu) + eval_s, [p.key, fwd.key], p.split
                if not p.fits:
                    split += " (does not fit)"
            elif meth.kind is Kind.TRAINS_SMALL:
                p = planner.program(e, "heads")
                used[p.key] = p
                # a step, then evaluation at about a third of a step per batch, over every role
                evals = math.ceil(size.evaluated / p.batch) / 3
                secs, progs = (head_steps + evals) * p.seconds(device, mfu), [p.key]
                # lp, a3 and layer/<k> have no small CNN: LEVI's heads bound their time, and
                # their memory is a few states per example
                if not small_model_job(m):
                    split = "none"
                else:
                    split = p.split + ("" if p.fits else " (does not fit)")
                    if p.micro_batches > 1:
                        split += " (batch norm per micro-batch)"
            elif m == "ft_zeroshot":  # three mixing weights on id_val, then every role once
                secs = (3 * math.ceil(size.id_val / fwd.batch) * fwd.seconds(device, mfu) + eval_s)
                progs, split = [fwd.key], "none"
            else:  # ensembles and references: host work over stored predictions
                secs, progs, split = 0.0, [], "none"
            out.compute_s += counts[(ds_id, m)] * secs
            secs += overhead_s
            per_job[(ds_id, m)] = secs
            out.jobs.append(JobCost(ds_id, m, counts[(ds_id, m)], secs, progs, split))
            if not small_model_job(m) and meth.kind is Kind.TRAINS_SMALL:
                out.notes.append("lp, a3 and layer/<k> are costed as LEVI's heads step (an upper "
                                 "bound; they run no small model)")
            if meth.kind in (Kind.COMPOSITE, Kind.REFERENCE):
                out.notes.append("ensembles and reference rows train nothing: the fixed cost per "
                                 "job only (ft_zeroshot adds its forward passes)")
    depth = _levels({m for _, m in counts})
    wall = 0.0
    for level in sorted(set(depth.values())):
        durations = [per_job.get((d, m), 0.0) for (d, m), c in counts.items() if depth[m] == level
                     for _ in range(c)]
        if level == 0:
            durations += [j.seconds_each for j in out.shared]
        wall += _schedule(durations, n_devices)
    out.wall_s = wall
    return out, list(used.values())


def sizes(logical: str, ds_id: str, preset: str) -> DataSize:
    """The dataset's sizes under a preset: ``DATA`` for the paper's, else read from the data
    (fixtures, local samples), which the cpu and smoke presets have on this machine."""
    if preset == "paper":
        return DATA[logical]
    from levi_core.data import load_dataset

    ds = load_dataset(ds_id)
    n_eval = len({i for r in ds.eval_roles for i in ds.splits[r].example_ids.tolist()})
    return DataSize(len(ds.splits["train"]), len(ds.splits.get("id_val", ds.splits["train"])),
                    n_eval, "read from the data")


# ------------------------------------------------------------------------------ output
def _gb(n: float) -> str:
    """Bytes for a reader: GB at paper scale, MB or kB for the tiny programs of smoke."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size or unit == "kB":
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _hours(s: float) -> str:
    return f"{s / 3600:.1f}" if s >= 360 else f"{s / 3600:.2f}"


@dataclass
class DeviceRun:
    """One device kind's plan of the asked tables: what ``render_markdown`` lays side by side."""

    device: Device
    plans: list[TablePlan]
    programs: list[ProgramCost]
    limit: int | None = None

    @property
    def usable(self) -> int:
        return self.limit if self.limit is not None else self.device.usable_memory


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
            + ["| " + " | ".join(r) + " |" for r in rows])


def _program_rows(runs: list[DeviceRun]) -> tuple[list[str], list[str], list[list[str]]]:
    """One row per program: XLA's device-independent figures once (FLOPs, bytes, memory of the
    whole batch), then per device the split chosen, its peak, whether it fits, its step time."""
    keys = sorted({p.key for r in runs for p in r.programs})
    by_dev = [{p.key: p for p in r.programs} for r in runs]
    header = ["program", "GFLOP", "accessed", "arguments", "peak unsplit"]
    align = [":--", "--:", "--:", "--:", "--:"]
    for r in runs:
        header += [f"{r.device.name}: split", "peak", "fits", "ms"]
        align += [":--", "--:", ":--", "--:"]
    rows = []
    for k in keys:
        present = [d[k] for d in by_dev if k in d]
        # the unsplit compilation carries the whole batch's figures; a split one differs only
        # by the accumulation loop's bookkeeping
        base = next((p for p in present if p.micro_batches == 1), present[0])
        row = [k, f"{base.flops / 1e9:,.2f}", _gb(base.bytes_accessed), _gb(base.argument_bytes),
               _gb(base.peak_unsplit_bytes)]
        for r, d in zip(runs, by_dev):
            p = d.get(k)
            row += (["-"] * 4 if p is None else
                    [p.split, _gb(p.peak_bytes), "yes" if p.fits else "**no**",
                     f"{p.seconds(r.device, r.plans[0].mfu) * 1e3:,.3g}"])
        rows.append(row)
    return header, align, rows


def _job_groups(runs: list[DeviceRun], table_index: int, skip: set
                ) -> list[tuple[str, int, list[JobCost | None]]]:
    """A table's jobs grouped by what they cost: methods that run the same programs for the same
    time on every device share one row (``fs, ft, lp_ft``), and jobs that train nothing share
    one row per table, so no two rows repeat each other's figures. ``skip``: the (dataset,
    method, jobs) an earlier table of the plan listed already (the same runs, run once)."""
    per_dev = [{(j.dataset, j.method): j for j in r.plans[table_index].shared + r.plans[table_index].jobs}
               for r in runs]
    names = [n for n in per_dev[0] if (*n, per_dev[0][n].count) not in skip]
    groups: dict[tuple, list[tuple[str, str]]] = {}
    for name in names:
        jobs = [d.get(name) for d in per_dev]
        trains = any(j is not None and j.programs for j in jobs)
        cost = tuple((round(j.seconds_each), j.split) if j else None for j in jobs)
        key = (trains, jobs[0].count if trains else None, cost if trains else None)
        groups.setdefault(key, []).append(name)
    out = []
    for key, members in groups.items():
        by_ds: dict[str, list[str]] = {}
        for ds, m in members:
            by_ds.setdefault(ds, []).append(m)
        label = "; ".join(f"{ds}: {', '.join(ms)}" for ds, ms in by_ds.items())
        if not key[0]:
            label = f"train nothing (fixed cost only): {label}"
        count = sum(per_dev[0][n].count for n in members)
        totals = []
        for d in per_dev:
            js = [d[n] for n in members if n in d]
            totals.append((sum(j.count * j.seconds_each for j in js), js))
        out.append((label, count, totals))
    out.sort(key=lambda g: -g[2][0][0])
    return out


def render_markdown(runs: list[DeviceRun], elapsed: float | None = None) -> str:
    """Every device side by side: a summary per table, the programs once, then each table's jobs
    grouped by cost, with a column pair (minutes per job, device-hours) per device."""
    lines = ["## Devices", ""]
    for r in runs:
        p0 = r.plans[0]
        lines.append(f"- **{r.device.name}**: {r.device.label}, {p0.n_devices} device(s), MFU "
                     f"{p0.mfu:.0%}, memory limit {_gb(r.usable)} per program, "
                     f"{p0.overhead_s:.0f} s fixed cost per job")
    header, align = ["table", "jobs"], [":--", "--:"]
    for r in runs:
        header += [f"{r.device.name}: device-hours", "computing", f"wall h on {r.plans[0].n_devices}"]
        align += ["--:", "--:", "--:"]
    rows = []
    for i, t in enumerate(runs[0].plans):
        row = [f"{t.table} ({t.preset})", str(sum(j.count for j in t.jobs))]
        for r in runs:
            tp = r.plans[i]
            row += [_hours(tp.device_s), _hours(tp.compute_s), _hours(tp.wall_s)]
        rows.append(row)
    lines += ["", "## Tables", ""] + _table(header, align, rows)
    header, align, rows = _program_rows(runs)
    lines += ["", "## Programs (per call; XLA's analyses of the CPU compilation)", ""]
    lines += _table(header, align, rows)
    listed: set = set()
    seen: dict[tuple, str] = {}  # a job row's figures -> the first row that showed them
    for i, t in enumerate(runs[0].plans):
        lines += ["", f"### {t.table} ({t.preset})", ""]
        mine = {(j.dataset, j.method, j.count) for j in t.shared + t.jobs}
        earlier = mine & listed
        if earlier:
            n = sum(c for _, _, c in earlier)
            lines += [f"{n} of its jobs ({', '.join(sorted({m for _, m, _ in earlier}))}) are "
                      "listed under an earlier table above: the same runs, run once for both.", ""]
        header, align = ["jobs of", "jobs"], [":--", "--:"]
        for r in runs:
            header += [f"{r.device.name}: s per job", "device-hours", "split"]
            align += ["--:", "--:", ":--"]
        rows = []
        for label, count, totals in _job_groups(runs, i, listed):
            figures = [str(count)]
            for total_s, js in totals:
                each = sorted({_sig(j.seconds_each) for j in js}, key=lambda x: float(x.replace(",", "")))
                splits = sorted({j.split for j in js})
                figures += ["-".join((each[0], each[-1])) if len(each) > 1 else each[0],
                            _sig(total_s / 3600), ", ".join(splits)]
            first = seen.setdefault(tuple(figures), f"{t.table}: {label}")
            if first != f"{t.table}: {label}":  # other jobs running the same programs as long
                figures = [figures[0], f"as {first}"] + [""] * (len(figures) - 2)
            rows.append([label] + figures)
        if rows:
            lines += _table(header, align, rows)
        listed |= mine
        notes = sorted({n for r in runs for n in r.plans[i].notes})
        if notes:
            lines.append("")
        lines += [f"- {n}" for n in notes]
    if elapsed is not None:
        lines += ["", f"(planned in {elapsed:.0f} s)"]
    return "\n".join(lines) + "\n"


def _sig(x: float) -> str:
    """Three significant figures (thousands grouped): small jobs' seconds and device-hours stay
    told apart instead of rounding to the same 0.002."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


CSV_FIELDS = ("device", "n_devices", "mfu", "table", "dataset", "method", "jobs", "hours_per_job",
              "device_hours", "split", "peak_gb", "programs")


def csv_rows(plans: list[TablePlan], programs: list[ProgramCost]) -> list[dict]:
    by_key = {p.key: p for p in programs}
    rows = []
    for t in plans:
        for j in t.shared + t.jobs:
            peak = max((by_key[k].peak_bytes for k in j.programs), default=0)
            rows.append({"device": t.device, "n_devices": t.n_devices, "mfu": t.mfu, "table": t.table,
                         "dataset": j.dataset, "method": j.method, "jobs": j.count,
                         "hours_per_job": round(j.seconds_each / 3600, 4),
                         "device_hours": round(j.count * j.seconds_each / 3600, 3),
                         "split": j.split, "peak_gb": round(peak / 1e9, 2),
                         "programs": "; ".join(j.programs)})
    return rows


def to_csv(rows: list[dict], header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    if header:
        w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def mfu_from(path: str, dtype: str = "float32") -> float:
    """The training step's MFU measured by ``gpu_check --json`` (Table 1's full fine-tuning step
    of its ``dtype``)."""
    data = json.loads(open(path).read())
    try:
        mfu = data["table1"][dtype]["timing"]["train_full"]["mfu"]
    except (KeyError, TypeError):
        raise ConfigError(f"{path}: no table1.{dtype}.timing.train_full.mfu; give the JSON that "
                          "`python -m bench.benchmarks.gpu_check --json FILE` wrote on a GPU") from None
    if not mfu:
        raise ConfigError(f"{path}: its MFU is empty (a CPU fallback run?); give --mfu instead")
    return float(mfu)


def run_plan(tables: list[str], preset: str, device_name: str, n_devices: int, mfu: float,
             limit: int | None, log=print, overhead_s: float = JOB_OVERHEAD_S
             ) -> tuple[list[TablePlan], list[ProgramCost], Device]:
    """The plan of ``tables`` on one device kind, for use from Python (``command`` is the CLI)."""
    device = get_device(device_name)
    if not 0 < mfu <= 1:
        raise ConfigError(f"--mfu {mfu}: give a fraction in (0, 1], e.g. 0.35")
    if n_devices < 1:
        raise ConfigError(f"--devices {n_devices}: give a positive number of devices")
    planner = ProgramPlanner(limit if limit is not None else device.usable_memory, log)
    plans, programs = [], {}
    for t in tables:
        log(f"{t}: planning its programs ({preset}, {device.name})")
        tp, used = plan_table(t, preset, device, n_devices, mfu, planner, overhead_s)
        plans.append(tp)
        programs.update({p.key: p for p in used})
    return plans, list(programs.values()), device


def to_json(plans, programs) -> dict:
    return {"programs": [asdict(p) for p in programs],
            "tables": [{**asdict(t), "device_hours": t.device_s / 3600, "wall_hours": t.wall_s / 3600,
                        "compute_hours": t.compute_s / 3600}
                       for t in plans]}


__all__ = ["DEVICES", "DEFAULT_MFU", "run_plan", "render_markdown", "DeviceRun", "csv_rows", "to_csv", "to_json",
           "mfu_from", "ProgramPlanner", "plan_table"]


# ------------------------------------------------------------------------------ command line
def add_arguments(p) -> None:
    """``bench plan``'s flags (the parser lives in ``bench.cli``)."""
    p.add_argument("tables", nargs="+", help="tables to plan, e.g. table1 table2 table4")
    p.add_argument("--preset", default="paper", help="size preset (default: paper)")
    p.add_argument("--device", action="append", default=None, metavar="NAME[:N]",
                   help="accelerator, and how many run the table's jobs side by side (default 1); "
                        f"repeatable; default h100-80gb. Known: {', '.join(DEVICES)}")
    p.add_argument("--mfu", type=float, default=None,
                   help=f"model FLOPs utilisation assumed (default {DEFAULT_MFU})")
    p.add_argument("--mfu-from", default=None, metavar="JSON",
                   help="read the MFU from `python -m bench.benchmarks.gpu_check --json` output")
    p.add_argument("--max-device-memory", default=None, metavar="SIZE",
                   help="memory a program may use, e.g. 40GB (default: 90%% of the device's)")
    p.add_argument("--job-overhead", type=float, default=JOB_OVERHEAD_S, metavar="SECONDS",
                   help=f"fixed seconds per job: start, loading, compiling (default {JOB_OVERHEAD_S:.0f})")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the plan as JSON")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write DIR/plan.md and DIR/plan.csv (e.g. tables/paper)")


def parse_device(text: str) -> tuple[str, int]:
    """``"tpu-v5e:8"`` -> ``("tpu-v5e", 8)``; a plain name is one device."""
    name, _, n = text.partition(":")
    get_device(name)
    try:
        count = int(n) if n else 1
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"--device {text!r}: the count after ':' must be a positive integer, "
                          "e.g. tpu-v5e:8")
    return name, count


def command(args) -> int:
    """``bench plan``: every device asked for, one Markdown section each; CSV/JSON on request."""
    import os
    from pathlib import Path

    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the plan compiles for the host only
    from bench.presets import get_preset
    from bench.specs import get_table
    from levi_core import training

    get_preset(args.preset)
    for t in args.tables:
        get_table(t)
    if args.job_overhead < 0:
        raise ConfigError(f"--job-overhead {args.job_overhead}: give seconds >= 0, e.g. 60")
    if args.mfu is not None and args.mfu_from:
        raise ConfigError("give --mfu or --mfu-from, not both")
    mfu = mfu_from(args.mfu_from) if args.mfu_from else (args.mfu or DEFAULT_MFU)
    if not 0 < mfu <= 1:
        raise ConfigError(f"--mfu {mfu}: give a fraction in (0, 1], e.g. {DEFAULT_MFU}")
    limit = training.parse_bytes(args.max_device_memory) if args.max_device_memory else None
    devices = [parse_device(d) for d in (args.device or ["h100-80gb"])]
    t0 = time.perf_counter()
    runs, rows, js = [], [], []
    planner = None
    for name, n in devices:
        device = get_device(name)
        # programs compiled once serve every device whose memory limit is the same
        lim = limit if limit is not None else device.usable_memory
        if planner is None or planner.limit != lim:
            planner = ProgramPlanner(lim, lambda m: print(m, file=sys.stderr, flush=True))
        plans, programs = [], {}
        for t in args.tables:
            print(f"{t}: planning ({args.preset}, {name})", file=sys.stderr, flush=True)
            tp, used = plan_table(t, args.preset, device, n, mfu, planner, args.job_overhead)
            plans.append(tp)
            programs.update({p.key: p for p in used})
        runs.append(DeviceRun(device, plans, list(programs.values()), limit))
        rows += csv_rows(plans, list(programs.values()))
        js.append({"device": name, **to_json(plans, list(programs.values()))})
    elapsed = time.perf_counter() - t0
    md = render_markdown(runs)
    text = md + f"\n(planned in {elapsed:.0f} s on this machine's CPU)\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "plan.md").write_text(PLAN_HEADER.format(tables=" ".join(args.tables),
                                                       preset=args.preset, mfu=mfu,
                                                       overhead=args.job_overhead) + md)
        (out / "plan.csv").write_text(to_csv(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(js, indent=2))
    return 0


PLAN_HEADER = """# What the paper's tables cost, before you rent

Written by `bench plan` (`bench/plan.py`, whose docstring states the model): every program's
FLOPs and memory come from XLA's analyses of the project's own programs compiled on abstract
inputs (paper shapes, no weights); a step's time is FLOPs / (MFU {mfu:.0%} x the datasheet
peak), or bytes / bandwidth where larger, and every job adds a fixed {overhead:.0f} s (start,
loading, compiling). Tables: {tables}; preset {preset}. A program over the device's
memory runs as gradient accumulation over micro-batches (the `split` column), as `bench run`
does on that device. Memory figures are XLA's CPU buffer assignment: expect a GPU's or TPU's
peak to differ by up to about a quarter.

"""
