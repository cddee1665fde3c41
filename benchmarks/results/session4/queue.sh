#!/bin/bash
# usage: queue.sh WAITPID job... ; job = "name|args"
. /work/venv/bin/activate
cd /work/wt-carry
wait_pid=$1; shift
while kill -0 $wait_pid 2>/dev/null; do sleep 10; done
for job in "$@"; do
  name=${job%%|*}; args=${job#*|}
  [ -f /work/bench/STOP ] && break
  echo "$(date +%T) start $name" >> /work/bench/queue.log
  PYTHONPATH=/work/wt-carry OMP_NUM_THREADS=1 python -m benchmarks.accuracy --data-dir /work/main/.fmnist --threads 1 --no-step-timing $args --out /work/bench/$name.json > /work/bench/$name.log 2>&1
  echo "$(date +%T) end $name rc=$?" >> /work/bench/queue.log
done
