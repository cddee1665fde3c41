#!/usr/bin/env bash
# The accuracy benchmark on one lent GPU machine, in one call (the device tool lends minutes, not hours).
#
#   OUT=/some/dir DEADLINE=480 bash benchmarks/gpu_batch.sh
#
# A smoke run first (stops at once if the GPU path is broken), then the one-task timing alone, then every
# job below as its own process on the one GPU, each stopped at DEADLINE seconds. Measured on an H200
# (2026-11-26): one process trains a 5x2 task in about 12 s; 15 processes sharing the GPU each take about
# 46 s a task (about 4x the throughput of one), so a 10x1 run needs more than 8 minutes among 15. The benchmark writes its
# JSON after every finished run, so a stopped job keeps what it finished. Everything lands in
# $OUT/gpu_runs.tar.gz and $OUT/gpu_batch.log; merge with `python -m benchmarks.accuracy --merge`.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
DEADLINE=${DEADLINE:-480}
RUNS=$OUT/gpu_runs
mkdir -p "$RUNS"
exec > >(tee "$OUT/gpu_batch.log") 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, numpy, safetensors; print('torch', torch.__version__, torch.cuda.is_available())"

bundle() { tar -czf "$OUT/gpu_runs.tar.gz" -C "$OUT" gpu_runs; }
trap bundle EXIT

python3 -m benchmarks.accuracy --quick --device cuda --out "$RUNS/quick.json" >"$RUNS/quick.log" 2>&1 \
  || { tail -30 "$RUNS/quick.log"; echo "SMOKE FAILED"; exit 1; }
echo "smoke ok: $(grep -c 'final A' "$RUNS/quick.log") runs"
timeout 120 python3 -m benchmarks.train_time --threads 1 --variants dgmw dgma --out "$RUNS/train_time_gpu.json" \
  >"$RUNS/train_time.log" 2>&1; echo "train_time rc $?"

B="python3 -m benchmarks.accuracy --device cuda --threads 1"
PIDS=()
job() {  # job NAME ARGS...: one process, its own JSON and log
  local name=$1; shift
  timeout "$DEADLINE" $B "$@" --out "$RUNS/$name.json" >"$RUNS/$name.log" 2>&1 &
  PIDS+=($!)
}
S="--no-step-timing"
# DGMw, default preset: the seeds and sizes the CPU did not reach, with their baselines
job w10_800_s1 --protocols 10x1 --sizes 800 --seeds 1 --methods dgmw joint finetune $S
job w10_800_s2 --protocols 10x1 --sizes 800 --seeds 2 --methods dgmw joint finetune $S
job w10_2k_s0 --protocols 10x1 --sizes 2000 --seeds 0 --methods dgmw joint finetune
job w10_2k_s1 --protocols 10x1 --sizes 2000 --seeds 1 --methods dgmw joint finetune $S
job w10_2k_s2 --protocols 10x1 --sizes 2000 --seeds 2 --methods dgmw joint finetune $S
# DGMa everywhere
job a10_800_s0 --protocols 10x1 --sizes 800 --seeds 0 2 --methods dgma
job a10_800_s1 --protocols 10x1 --sizes 800 --seeds 1 --methods dgma $S
job a10_2k_s0 --protocols 10x1 --sizes 2000 --seeds 0 1 --methods dgma $S
job a5_800 --protocols 5x2 --sizes 800 --seeds 1 2 --methods dgma $S
job a5_2k --protocols 5x2 --sizes 2000 --seeds 0 1 2 --methods dgma $S
# the ablation: each lever off, more seeds
job abl_s0 --protocols 5x2 --sizes 800 --seeds 0 --levers consolidate_real no_step_floor zero_mask_start $S
job abl_s12 --protocols 5x2 --sizes 800 --seeds 1 2 --levers critic_head no_projection $S
# candidate levers (not the default): a larger consolidation, a larger step budget
job cand_cons --protocols 5x2 --sizes 800 --seeds 0 1 2 \
  --lever more_consolidation consolidate_epochs=8 consolidate_per_class=1600 $S
job cand_steps --protocols 5x2 --sizes 800 --seeds 0 1 2 --lever steps_1000 steps=1000 $S
# the paper preset (METHOD.md section 8.1 budget: 101 epochs over the upload), 10x1, its own JSON
job paper_10x1 --preset paper --protocols 10x1 --sizes 800 --seeds 0 --methods dgmw $S
sleep 20; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
wait "${PIDS[@]}"  # not a bare `wait`: that also waits for the tee above, which never ends
for f in "$RUNS"/*.log; do echo "== $f"; grep -E "final A|Error|error" "$f" | tail -8; done
