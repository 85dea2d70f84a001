"""``ab.py`` with every replayed library schedule's epilogue left after its tiles (One-Shot's
replay before ``ms_meta.one_shot.search.epilogue_at_tile``), for side-by-side timing:

    python ab_no_epilogue.py compile noepi --network mobilenet-v2 --library LIB --work DIR
    python ../2026-12-05-rocketlake-dense/ab.py compile rule --network mobilenet-v2 \\
        --library LIB --work DIR
    python ../2026-12-05-rocketlake-dense/ab.py time noepi rule --network mobilenet-v2 \\
        --work DIR --rounds 3
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import ms_meta.one_shot.search as search

__all__: list[str] = []

AB = Path(__file__).resolve().parents[1] / "2026-12-05-rocketlake-dense" / "ab.py"

if __name__ == "__main__":
    search.epilogue_pays = lambda mod, kind: False
    sys.argv = [str(AB), *sys.argv[1:]]
    runpy.run_path(str(AB), run_name="__main__")
