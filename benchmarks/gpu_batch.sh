#!/usr/bin/env bash
# The accuracy benchmark on one lent GPU machine, in one call (the device tool lends minutes, not hours).
#
#   OUT=/some/dir DEADLINE=500 bash benchmarks/gpu_batch.sh
#
# A smoke run first (stops at once if the GPU path is broken), then every job below as its own process
# on the one GPU, each stopped at DEADLINE seconds. Measured on an H200 (2026-11-26): one process trains
# a 1000-step task in about 12 s; 15 processes sharing the GPU each took about 80 s a task (about 4x the
# throughput of one, the GPU time-sliced between them), so no 10-task run finished among 15. This batch
# keeps to six to eight processes, mostly the 10-task runs that the CPU cannot reach in a session (six
# finished in 6-7 minutes, 2026-11-26). The benchmark writes its JSON after every finished run, so a
# stopped job keeps what it finished; each DGM run also saves its last learner (--checkpoints) for the
# classifier probe (benchmarks/probe_classifier.py). Everything lands in $OUT/runs.tar.gz (JSONs, logs), ckpt.tar.gz, samples.tar.gz and gpu_batch.log; merge with
# `python -m benchmarks.accuracy --merge`.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
DEADLINE=${DEADLINE:-500}
RUNS=/tmp/gpu_runs  # outside $OUT: the device tool returns at most 8 files of at most 16 MiB each
mkdir -p "$RUNS/ckpt" "$RUNS/samples"
exec > >(tee "$OUT/gpu_batch.log") 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, numpy, safetensors; print('torch', torch.__version__, torch.cuda.is_available())"

bundle() {  # three archives, each well under 16 MiB (one with the sample PNGs and checkpoints was not)
  (cd "$RUNS" && tar -czf "$OUT/runs.tar.gz" ./*.json ./*.log)
  tar -czf "$OUT/ckpt.tar.gz" -C "$RUNS" ckpt
  tar -czf "$OUT/samples.tar.gz" -C "$RUNS" samples
}
trap bundle EXIT

if [ "${SMOKE:-1}" = 1 ]; then  # SMOKE=0 skips it: a broken GPU path also stops every job within seconds
  timeout 90 python3 -m benchmarks.accuracy --quick --device cuda --no-step-timing --out "$RUNS/quick.json" \
    >"$RUNS/quick.log" 2>&1 || { tail -20 "$RUNS/quick.log"; echo "SMOKE FAILED"; exit 1; }
  echo "smoke ok: $(grep -c 'final A' "$RUNS/quick.log") runs"
fi

B="python3 -m benchmarks.accuracy --device cuda --threads 1 --no-step-timing"
B="$B --checkpoints $RUNS/ckpt --samples $RUNS/samples"
PIDS=()
job() {  # job NAME ARGS...: one process, its own JSON and log
  local name=$1; shift
  timeout "$DEADLINE" $B "$@" --out "$RUNS/$name.json" >"$RUNS/$name.log" 2>&1 &
  PIDS+=($!)
}
# BATCH=1 (2026-11-26, third session): the default preset's DGMw 10x1 at 800 (three seeds) and 5x2 at
# 2000 (three seeds), DGMa with its claim cap on 10x1 and 5x2 at 800 (seed 0), eight processes, 451 s.
# BATCH=2: DGMa's other seeds, three processes, in what device time was left.
if [ "${BATCH:-1}" = 1 ]; then
  for s in 0 1 2; do
    job w10_800_s$s --protocols 10x1 --sizes 800 --seeds $s --methods dgmw
    job w5_2k_s$s --protocols 5x2 --sizes 2000 --seeds $s --methods dgmw
  done
  job a10_800_s0 --protocols 10x1 --sizes 800 --seeds 0 --methods dgma
  job a5_800_s0 --protocols 5x2 --sizes 800 --seeds 0 --methods dgma
else
  job a10_800_s1 --protocols 10x1 --sizes 800 --seeds 1 --methods dgma
  job a10_800_s2 --protocols 10x1 --sizes 800 --seeds 2 --methods dgma
  job a5_800_s1 --protocols 5x2 --sizes 800 --seeds 1 --methods dgma
fi
sleep 30; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
wait "${PIDS[@]}"  # not a bare `wait`: that also waits for the tee above, which never ends
for f in "$RUNS"/*.log; do echo "== $f"; grep -E "final A|task 9|Error|error" "$f" | tail -4; done
