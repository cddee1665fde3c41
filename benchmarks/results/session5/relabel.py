"""Relabel accuracy.json's DGMw runs that the generator average replaced (2026-11-26, fifth session).

    python benchmarks/results/session5/relabel.py accuracy.json relabelled.json new_run.json...

Each new_run.json is written beside itself as new_run.relabelled.json; `benchmarks.accuracy --merge`
then joins them (the merge keeps every file's machine).

- Every run's config gets `g_ema: 0.0` where it lacks the key: LearnerConfig had no such field when it
  ran, and the last step's weights are what that value keeps.
- The new runs ran as the lever `g_ema` (g_ema=0.995 over the preset of the day), which is today's
  default: they become `dgmw`.
- A `dgmw` run whose protocol, size and seed was rerun with the average becomes `dgmw-no_g_ema`, the
  lever that turns the average off, so the report pairs the two by seed. DGMw runs of panels not rerun
  stay `dgmw`; the report marks them (`off_default`).
"""

import json
import sys

sys.path.insert(0, ".")
from benchmarks.accuracy import LEVERS  # noqa: E402

src, out, *new = sys.argv[1:]
files = {path: json.load(open(path)) for path in new}
fresh = [r for f in files.values() for r in f["runs"]]
rerun = {(r["protocol"], r["train_per_class"], r["seed"]) for r in fresh}
d = json.load(open(src))
moved = 0
for r in d["runs"]:
    if r.get("config"):
        r["config"].setdefault("g_ema", 0.0)
    if r["method"] == "dgmw" and (r["protocol"], r["train_per_class"], r["seed"]) in rerun:
        lever = LEVERS["no_g_ema"]
        r.update(
            method="dgmw-no_g_ema",
            lever="no_g_ema",
            overrides=lever["overrides"],
            lever_description=lever["description"],
        )
        moved += 1
for r in fresh:
    assert r["method"] == "dgmw-g_ema" and r["config"]["g_ema"] == 0.995, r["method"]
    r.update(method="dgmw", lever=None, overrides={}, lever_description=None)
json.dump(d, open(out, "w"), indent=1)
for path, f in files.items():
    json.dump(f, open(path.removesuffix(".json") + ".relabelled.json", "w"), indent=1)
print(f"{len(d['runs'])} runs, {moved} relabelled dgmw-no_g_ema, {len(fresh)} new runs now dgmw")
