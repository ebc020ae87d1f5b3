#!/usr/bin/env bash
# The full fault run of issue 7 (not part of `make test`, which runs tests/e2e/faults.sh with 6 kills):
# 25 kill -9 at random moments of a training run that checkpoints every step (~12 MB checkpoints, so
# many kills land inside a checkpoint write), then the failing-write, non-finite, dying-rank and
# file-locking tests. Prints the counts: kills, kills survived, kills inside a write, checkpoints lost.
#   bash tests/faults_full.sh                 # after `make tools`; about 1.5 minutes on 2 cores
#   KILLS=100 SEED=42 bash tests/faults_full.sh   # more kills, reproducible kill times
set -u
cd "$(dirname "$0")/.."
KILLS=${KILLS:-25} exec bash tests/e2e/faults.sh
