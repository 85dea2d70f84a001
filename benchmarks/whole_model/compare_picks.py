"""Per task: a One-Shot database's predicted pick against another database's best record, both
built and re-measured side by side (median of 5 repeats each).

Usage: python benchmarks/whole_model/compare_picks.py ONE_SHOT_WORK_DIR OTHER_WORK_DIR

Tasks are labelled by their position and the names of their blocks (Relax names every task's
PrimFunc ``main``).
"""

import re
import sys

import numpy as np
from tvm.s_tir import Schedule
from tvm.s_tir import meta_schedule as ms

from ms_meta.tuning.builder import make_builder
from ms_meta.tuning.intrin import import_tensor_intrinsics
from ms_meta.tuning.measure import MeasureSettings, make_local_runner, measure, run_secs_of
from ms_meta.tuning.target import host_target

BLOCK_NAME = re.compile(r'T\.sblock\("([A-Za-z_]+?)(?:_\d+)?"')


def main(one_shot_dir: str, other_dir: str) -> None:
    target = host_target()
    import_tensor_intrinsics("llvm")
    one_shot = ms.database.JSONDatabase(
        path_workload=f"{one_shot_dir}/database_workload.predicted.json",
        path_tuning_record=f"{one_shot_dir}/database_tuning_record.predicted.json",
    )
    other = ms.database.JSONDatabase(work_dir=other_dir)
    candidates, labels = [], []
    for index, record in enumerate(one_shot.get_all_tuning_records()):
        mod = record.workload.mod
        if not other.has_workload(mod):
            continue
        best = other.get_top_k(other.commit_workload(mod), 1)
        if not best:
            continue
        name = f"{index:02d} " + ",".join(dict.fromkeys(BLOCK_NAME.findall(mod.script())))
        for tag, chosen in (("one-shot", record), ("other", best[0])):
            sch = Schedule(mod)
            chosen.trace.apply_to_schedule(sch, remove_postproc=False)
            candidates.append(ms.MeasureCandidate(sch, chosen.args_info))
            labels.append((name[:50], tag))
    results = measure(make_builder(), make_local_runner(MeasureSettings(repeat=5)), target,
                      candidates)  # fmt: skip
    us: dict[str, dict[str, float | None]] = {}
    for (name, tag), result in zip(labels, results, strict=True):
        secs = run_secs_of(result)
        us.setdefault(name, {})[tag] = None if secs is None else float(np.median(secs)) * 1e6
    for name, pair in sorted(us.items(), key=lambda kv: -(kv[1].get("one-shot") or 0)):
        a, b = pair.get("one-shot"), pair.get("other")
        ratio = f"{a / b:.2f}" if a and b else "-"
        print(f"{name:52s} one-shot {a or 0:12.1f} us  other {b or 0:12.1f} us  ratio {ratio}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
