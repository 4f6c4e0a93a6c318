"""Why demo drags fail: sorts every drag that did not land into one cause, with counts.

Reads the rows of `bench_demo_drags.py --json` (run with the fit) and gives each drag that did
not land (tracked handles at the target and each fitted landmark within 2 px of it) the first
cause that applies, in this order:

1. model_blur: the generator's own image of the edited parameters, fitted, puts a landmark more
   than 2 px from its target, so no drag could land by this criterion;
2. wrong_start: the fit of the start image puts a landmark more than 2 px from its handle, so
   the handle is not on the part in the generator's image;
3. tracking_jump: the tracker reported the handles at (within 2 px of) the target, but the content
   is not there: the handle left its part for a similar feature;
4. short_of_stop: the content is within 2 px of the target and so are the tracked handles, but not
   within the loop's 1-px stop distance when it ended (step limit or stall);
5. tracker_lost: the content is within 2 px of the target but the tracked handle is not, so the
   loop kept pulling (or stalled) on the wrong spot;
6. weak_supervision: the loop ended without reaching and the part moved less than a third of the
   way (the content error fell by under a third);
7. stall: the loop ended on a stall after moving the part partway;
8. step_cap: still moving when the step limit came.

It also counts drags whose anchors (points that should stay) moved more than 2 px in content
(unmasked region drifting), and prints each failure's evidence: largest one-step handle jump,
tracking margins at start and end (0: another place matches as well), tracked point against the
fitted landmark in the result.

    python benchmarks/diagnose_drags.py out/bench.json [--details]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np
from bench_demo_drags import read_rows

LANDED_PX = 2.0
CAUSES = ("model_blur", "wrong_start", "tracking_jump", "short_of_stop", "tracker_lost", "weak_supervision", "stall",
          "step_cap")


def largest_jump(row: dict) -> float:
    """Largest one-step movement of any handle, in pixels."""
    traj = np.array(row["trajectory"])
    if len(traj) < 2:
        return 0.0
    return float(np.hypot(*np.moveaxis(np.diff(traj, axis=0), -1, 0)).max())


def cause(row: dict) -> str | None:
    """The first cause that applies to a drag that did not land; None for one that landed."""
    if row["landed"]:
        return None
    if max(row["target_fit_errors"]) > LANDED_PX:
        return "model_blur"
    if max(row["start_errors"]) > LANDED_PX:
        return "wrong_start"
    content_there = max(row["content_errors"]) <= LANDED_PX
    if not content_there and (row["reached"] or row["final_distance"] <= LANDED_PX):
        return "tracking_jump"
    if content_there:
        return "short_of_stop" if row["final_distance"] <= LANDED_PX else "tracker_lost"
    if row["content_error_after"] > (2 / 3) * row["content_error_before"]:
        return "weak_supervision"
    return "stall" if row["reason"] == "stalled" else "step_cap"


def breakdown(rows: list[dict]) -> str:
    """A table of causes per preset and scenario."""
    lines = ["| preset | scenario | drags | landed | " + " | ".join(CAUSES) + " | anchors drifted |",
             "|---|---|---|---|" + "---|" * len(CAUSES) + "---|"]
    for preset in dict.fromkeys(r["preset"] for r in rows):
        mine = [r for r in rows if r["preset"] == preset]
        groups = {name: [r for r in mine if r["scenario"] == name] for name in dict.fromkeys(r["scenario"] for r in mine)}
        groups["all"] = mine
        for name, rs in groups.items():
            counts = Counter(cause(r) for r in rs)
            drift = sum(bool(r["anchor_errors"]) and max(r["anchor_errors"]) > LANDED_PX for r in rs)
            lines.append(f"| {preset} | {name} | {len(rs)} | {counts[None]} | "
                         + " | ".join(str(counts[c]) for c in CAUSES) + f" | {drift} |")
    return "\n".join(lines)


def details(rows: list[dict]) -> str:
    lines = ["| preset | scenario | seed | cause | reason | steps | tracked px | content px | start fit px | "
             "target fit px | tracked vs fit px | max jump px | margin start -> end |", "|---" * 13 + "|"]
    for r in rows:
        c = cause(r)
        if c is None:
            continue
        fmt = lambda xs: "/".join(f"{x:.1f}" for x in xs)  # noqa: E731
        lines.append(f"| {r['preset']} | {r['scenario']} | {r['seed']} | {c} | {r['reason']} | {r['steps']} | "
                     f"{r['final_distance']:.1f} | {fmt(r['content_errors'])} | {fmt(r['start_errors'])} | "
                     f"{fmt(r['target_fit_errors'])} | {fmt(r['tracked_vs_fit'])} | {largest_jump(r):.1f} | "
                     f"{fmt(r['margin_start'])} -> {fmt(r['margin_end'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", help="bench_demo_drags.py --json output(s), run with the fit")
    ap.add_argument("--details", action="store_true", help="also list every failing drag with its evidence")
    args = ap.parse_args()
    rows = [row for path in args.json for row in read_rows(path)]
    if "landed" not in rows[0]:
        print("these rows were made with --no-fit; the diagnosis needs the fit", file=sys.stderr)
        return 2
    print(breakdown(rows))
    if args.details:
        print()
        print(details(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
