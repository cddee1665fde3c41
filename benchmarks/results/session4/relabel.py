"""Relabel accuracy.json's DGMw runs that the surplus carry replaced (2026-11-26, fourth session).

    python benchmarks/results/session4/relabel.py accuracy.json relabelled.json new_run.json...

- Every run's config gets `carry_surplus: false` where it lacks the key: LearnerConfig had no such
  field when it ran, and the rule it ran is the one that key turns off.
- A `dgmw` run whose protocol, size and seed were rerun at today's default (a `dgmw` run in one of the
  new files) becomes `dgmw-no_surplus_carry`, the lever that turns the carry off, so the report pairs
  the two by seed. DGMw runs of panels not rerun stay `dgmw`; the report marks them (`off_default`).
"""

import json
import sys

sys.path.insert(0, ".")
from benchmarks.accuracy import LEVERS  # noqa: E402

src, out, *new = sys.argv[1:]
rerun = {
    (r["protocol"], r["train_per_class"], r["seed"])
    for path in new
    for r in json.load(open(path))["runs"]
    if r["method"] == "dgmw"
}
d = json.load(open(src))
moved = 0
for r in d["runs"]:
    if r.get("config"):
        r["config"].setdefault("carry_surplus", False)
    if r["method"] == "dgmw" and (r["protocol"], r["train_per_class"], r["seed"]) in rerun:
        lever = LEVERS["no_surplus_carry"]
        r.update(
            method="dgmw-no_surplus_carry",
            lever="no_surplus_carry",
            overrides=lever["overrides"],
            lever_description=lever["description"],
        )
        moved += 1
json.dump(d, open(out, "w"), indent=1)
print(f"{len(d['runs'])} runs, {moved} relabelled dgmw-no_surplus_carry")
