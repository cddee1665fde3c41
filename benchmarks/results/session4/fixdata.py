"""The fourth session's runs read /work/main/.fmnist, a byte-identical copy (same sha256 for all four
IDX files) of /usr/share/datasets/fashion-mnist; name the canonical path so --merge accepts them."""

import json
import sys

for p in sys.argv[1:]:
    d = json.load(open(p))
    d["settings"]["data"] = "Fashion-MNIST from /usr/share/datasets/fashion-mnist"
    json.dump(d, open(p, "w"), indent=1)
