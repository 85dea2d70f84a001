"""``ab.py compile`` with library schedules that compute a fused task's epilogue inside the
main block's outer tile loop.

One-Shot replays a library schedule, measured on a plain task (a convolution alone), on the
fused task of the network (the convolution, then its bias ``add`` and ReLU6 ``clip``). The
trace names only the plain task's blocks, so the epilogue blocks stay loop nests of their own
over the whole output, after the convolution's; in MobileNetV2 the 384-channel 14x14 depthwise
convolution then ran in 264 us against 42.5 us with the epilogue moved into the convolution's
outer (parallel) tile loop (``reverse_compute_at``), and 31 us for the plain task alone
(rocketlake, 2 threads, 2026-12-05). This script applies that move to every replayed library
schedule (after the trace, before the postprocessors; a schedule it does not fit is replayed
as before) and otherwise runs ``ab.py``:

    python epilogue_at_tile.py compile NAME --network mobilenet-v2 --library PATH --work DIR
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import tvm

import ms_meta.one_shot.search as search

__all__ = ["epilogue_at_tile", "transfer_schedule"]

AB = Path(__file__).resolve().parents[1] / "2026-12-05-rocketlake-dense" / "ab.py"


def epilogue_at_tile(sch: tvm.s_tir.Schedule) -> None:
    """Compute every block after the tiled main block at the main block's last outer spatial
    tile loop (the loops the postprocessors fuse into the parallel one)."""
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    tiled = [
        i for i, b in enumerate(blocks)
        if "meta_schedule.tiling_structure" in sch.get(b).annotations
    ]  # fmt: skip
    if not tiled:
        return
    main = blocks[tiled[0]]
    spatial = sum(1 for iv in sch.get(main).iter_vars if iv.iter_type == tvm.tirx.IterVar.DataPar)
    loops = sch.get_loops(main)
    if len(loops) < spatial:
        return
    for block in blocks[tiled[0] + 1 :]:
        sch.reverse_compute_at(block, loops[spatial - 1])


def transfer_schedule(trace_json, mod, postprocs):
    """:func:`ms_meta.one_shot.search.transfer_schedule`, with :func:`epilogue_at_tile`."""
    sch = tvm.s_tir.Schedule(mod)
    try:
        tvm.s_tir.Trace.apply_json_to_schedule(trace_json, sch)
        try:
            moved = sch.copy()
            epilogue_at_tile(moved)
            sch = moved
        except tvm.TVMError:  # the epilogue does not fit the tile: replay as before
            pass
        for postproc in postprocs:
            if not postproc.apply(sch):
                return None
    except Exception:  # a TVMError on a block or loop the trace names that mod lacks
        return None
    return sch


if __name__ == "__main__":
    search.transfer_schedule = transfer_schedule
    sys.argv = [str(AB), *sys.argv[1:]]
    runpy.run_path(str(AB), run_name="__main__")
