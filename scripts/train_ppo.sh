#!/usr/bin/env bash
# PPO through verl on a GPU machine (configs/ppo_verl.yaml): `scripts/train_ppo.sh [key=value ...]`.
# Needs verl's environment (scripts/setup_verl.sh). GPUs per node and nodes:
#   scripts/train_ppo.sh 'train.verl={"trainer.n_gpus_per_node": 8}'
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/train.sh configs/ppo_verl.yaml "$@"
