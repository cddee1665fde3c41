"""Relabel accuracy.json's runs that the current default no longer describes (2026-11-26, third session).

- `dgmw` runs: consolidated 4 epochs at a constant lr -> `dgmw-short_consolidation` (the lever that
  turns today's 8 epochs with decay off).
- `dgma` run (10x1 800 s0): no claim cap -> `dgma-no_claim_cap`.
- config keys added to LearnerConfig after a run get the value that reproduces what the run did
  (claim_cap 0, classifier_ndf 0, consolidate_lr_decay False), so the report can pair levers.
- `dgmw-long_consolidation` (today's default, run as a lever on the AMD machine) stays as it is.
"""

import json
import sys

src, out = sys.argv[1], sys.argv[2]
d = json.load(open(src))
FILL = {"claim_cap": 0.0, "classifier_ndf": 0, "consolidate_lr_decay": False}
LEVER_SHORT = "the classifier consolidated 4 epochs at a constant lr (the default until 2026-11-26)"
SHORT = {"consolidate_epochs": 4, "consolidate_lr_decay": False}
runs = []
for r in d["runs"]:
    if r.get("config"):
        for k, v in FILL.items():
            r["config"].setdefault(k, v)
    if r["method"] == "dgmw":
        r.update(
            method="dgmw-short_consolidation",
            lever="short_consolidation",
            overrides=SHORT,
            lever_description=LEVER_SHORT,
        )
    elif r["method"] == "dgma":
        r.update(
            method="dgma-no_claim_cap",
            lever="no_claim_cap",
            overrides={"claim_cap": 0.0, **SHORT},
            lever_description="no claim cap (a later task may claim any free unit, METHOD.md) and the "
            "4-epoch constant-lr consolidation: the DGMa default until 2026-11-26",
        )
    if r["method"] == "dgmw-long_consolidation":
        r["lever_description"] = (
            "8 consolidation epochs with the lr decaying to 0, run as a lever on the "
            "AMD machine; the same config as today's dgmw"
        )
    runs.append(r)
d["runs"] = runs
json.dump(d, open(out, "w"), indent=1)
print(len(runs), "runs")
