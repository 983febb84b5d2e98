"""How much a small change of a long-term request recomputes: aligned chunks against consecutive slices.

Against the real MMODA every chunk costs minutes of OSA time per ScW, so a
change of the period or of the ScW list should recompute only the chunks
whose content changed. For 300 Crab-field ScWs of the simulated archive
(s_max 50) this prints, for the aligned chunks of
:func:`integral_workflows.jobs.split_into_chunks` and for the consecutive
slices used before (the baseline, computed here in the same process):

1. the period starts one month earlier: chunks to compute, and how many of
   them hold only new ScWs;
2. one ScW in the middle is lost: chunks to compute;
3. the number of chunks (jobs) of the unchanged request, a cost of the aligned grid.

Run: ``python bench/bench_chunk_reuse.py``. Ratios are aligned / baseline.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from integral_workflows.jobs import split_into_chunks
from mmoda_local.archive import ScwArchive

CRAB = dict(ra=83.633, dec=22.0145, radius=10.5)
ONE_MONTH_DAYS = 30.0


def consecutive_slices(scw_ids: list[str], s_max: int) -> set[tuple]:
    """The baseline: the sorted list cut every ``s_max`` ScWs."""
    ordered = sorted(set(scw_ids))
    return {tuple(ordered[i : i + s_max]) for i in range(0, len(ordered), s_max)}


def aligned(scw_ids: list[str], s_max: int) -> set[tuple]:
    """The aligned chunks of :func:`integral_workflows.jobs.split_into_chunks`, as tuples of ScW ids."""
    return {chunk.scw_ids for chunk in split_into_chunks(scw_ids, s_max=s_max)}


def crab_field(archive: ScwArchive) -> tuple[list[str], np.ndarray]:
    """Good Crab-field ScWs of the whole mission and their start times, in time order."""
    table = archive.table[archive.select(-1e9, 1e9, **CRAB)]
    keep = ~np.asarray(table["IN_BELT"]) & (np.asarray(table["GOOD_ISGRI"]) > 1000)
    return [f"{swid}.001" for swid in table["SWID"][keep]], np.asarray(table["TSTART"][keep], float)


def main() -> None:
    """Print, for both ways of cutting, the chunks recomputed after each change of the request."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scws", type=int, default=300)
    parser.add_argument("--s-max", type=int, default=50)
    parser.add_argument("--trials", type=int, default=20, help="random ScWs dropped, one at a time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        archive = ScwArchive.load(cache_dir=cache)
    every, starts = crab_field(archive)
    # the first period of --scws ScWs whose previous month also holds Crab observations
    first = next(
        i
        for i in range(1, len(every) - args.scws)
        if np.sum((starts >= starts[i] - ONE_MONTH_DAYS) & (starts < starts[i])) >= 10
    )
    base = every[first : first + args.scws]
    earlier_mask = (starts >= starts[first] - ONE_MONTH_DAYS) & (starts <= starts[first + args.scws - 1])
    earlier = [scw for scw, keep in zip(every, earlier_mask) if keep]
    added = set(earlier) - set(base)
    print(
        f"{len(base)} Crab-field ScWs from revolution {base[0][:4]} (s_max {args.s_max}); "
        f"one month earlier adds {len(added)} ScWs"
    )

    for name, cut in (("consecutive slices (baseline)", consecutive_slices), ("aligned chunks", aligned)):
        before = cut(base, args.s_max)
        grown = cut(earlier, args.s_max) - before
        only_new = sum(1 for c in grown if set(c) <= added)
        rng = np.random.default_rng(1)
        dropped = []
        for _ in range(args.trials):
            lost = base[int(rng.integers(len(base) // 4, 3 * len(base) // 4))]
            dropped.append(len(cut([s for s in base if s != lost], args.s_max) - before))
        print(
            f"{name:32s} jobs {len(before):3d} | one month earlier: {len(grown):2d} chunks to compute "
            f"({only_new} of new ScWs only) | one ScW lost: {np.mean(dropped):.2f} chunks "
            f"(max {max(dropped)}) over {args.trials} trials"
        )
        if name.startswith("consecutive"):
            baseline = (len(before), len(grown), np.mean(dropped))
        else:
            print(
                f"{'ratio aligned / baseline':32s} jobs {len(before) / baseline[0]:.2f} | one month earlier "
                f"{len(grown) / baseline[1]:.2f} | one ScW lost {np.mean(dropped) / baseline[2]:.2f}"
            )


if __name__ == "__main__":
    main()
