"""``bench plan``'s report lays devices side by side and never repeats a row: methods with the
same cost share one, jobs that train nothing share one, and jobs an earlier table lists are
named instead of listed again."""

from __future__ import annotations

from bench.devices import get_device
from bench.plan import DeviceRun, JobCost, ProgramCost, TablePlan, render_markdown


def _program(micro: int, peak: float) -> ProgramCost:
    return ProgramCost(key="toy train/all batch 8", backbone="toy", kind="train/all", batch=8,
                       input="8 tokens", dtype="float32", flops=1e12, bytes_accessed=1e9,
                       argument_bytes=1e8, output_bytes=0, temp_bytes=int(peak), code_bytes=0,
                       peak_bytes=int(peak), peak_unsplit_bytes=int(4e10), micro_batches=micro)


def _plan(table: str, device: str, n: int, secs: float, jobs: list[tuple[str, int, float, bool]]):
    t = TablePlan(table, "paper", device, n, 0.35)
    for method, count, each, trains in jobs:
        t.jobs.append(JobCost("toyset", method, count, each * secs,
                              ["toy train/all batch 8"] if trains else [], "none"))
    return t


def test_devices_side_by_side_and_no_repeated_rows():
    rows1 = [("ft", 12, 100.0, True), ("fs", 12, 100.0, True), ("ht", 12, 80.0, True),
             ("ref/mean", 3, 60.0, False), ("ft_fs", 3, 60.0, False)]
    rows5 = rows1[:2] + [("a3", 12, 70.0, True)]
    runs = [DeviceRun(get_device(d), [_plan("table1", d, n, f, rows1), _plan("table5", d, n, f, rows5)],
                      [_program(m, p)])
            for d, n, f, m, p in (("h100-80gb", 1, 1.0, 1, 4e10), ("tpu-v5e", 8, 2.0, 4, 1e10))]
    md = render_markdown(runs)
    assert "| h100-80gb: split | peak | fits | ms | tpu-v5e: split |" in md  # one program row
    assert md.count("| toy train/all batch 8 |") == 1 and "accumulate x4" in md
    table1 = md.split("### table1")[1].split("### table5")[0]
    assert "toyset: ft, fs" in table1 and "toyset: ht" in table1
    assert "train nothing (fixed cost only): toyset: ref/mean, ft_fs" in table1
    table5 = md.split("### table5")[1]
    assert "24 of its jobs (fs, ft) are listed under an earlier table above" in table5
    assert "toyset: ft" not in table5 and "toyset: a3" in table5
    body = [line for line in md.splitlines() if line.startswith("| toyset") or
            line.startswith("| train nothing")]
    figures = [tuple(line.split("|")[2:]) for line in body]
    assert len(figures) == len(set(figures)), "two rows repeat each other's figures"
