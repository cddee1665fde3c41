"""Rename the seed-0 no_surplus_carry rerun (5x2, 800) so it sits beside the Intel run of the same lever.

The same configuration as `dgmw-no_surplus_carry` seed 0 (the Intel Xeon run that was the default
until the carry), rerun on the AMD EPYC machine that ran today's 5x2 rows, so that its pair by seed
shares a machine: runs on different machines diverge from the first task on (float results differ).
"""

import json
import sys

path = sys.argv[1]
d = json.load(open(path))
for r in d["runs"]:
    r.update(
        method="dgmw-no_surplus_carry_same_machine",
        lever="no_surplus_carry_same_machine",
        lever_description="no_surplus_carry rerun on the AMD EPYC machine of today's 5x2 runs, so the "
        "pair by seed shares a machine",
    )
json.dump(d, open(path, "w"), indent=1)
