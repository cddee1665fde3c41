import sys, json, time
import numpy as np, torch
sys.path.insert(0, "/work/main")
torch.set_num_threads(1)
from tests.dgm.test_retention import TASKS, BUDGET, split, task_arrays
from sklearn.datasets import load_digits
from dgm import Learner, LearnerConfig
from dgm.data import colourise
d = load_digits(); x = (d.images / 16 * 255).astype(np.uint8); y = d.target
lookup = {dd: n for t in TASKS for dd, n in t.items()}
train_idx, test_idx = split((x, y))
configs = json.loads(sys.argv[1])
for name, over, colour, seed in configs:
    xx = colourise(x, 0) if colour else x
    cfg = LearnerConfig.preset("tiny", image_shape=(3 if colour else 1, 8, 8), variant="dgmw", **{**BUDGET, **over})
    L = Learner(cfg, seed=seed, device="cpu"); t0 = time.time()
    for task in TASKS:
        L.learn_task(*task_arrays((xx, y), train_idx, task))
    out = {}
    for dd, n in lookup.items():
        sel = test_idx[y[test_idx] == dd]
        p, _ = L.predict(xx[sel]); out[n] = round(float(np.mean(np.array(p) == n)), 3)
    old = [out[n] for t in TASKS[:-1] for n in t.values()]
    print(name, seed, f"{time.time()-t0:.0f}s", "old min", min(old), "old mean", round(np.mean(old), 3), out, flush=True)
