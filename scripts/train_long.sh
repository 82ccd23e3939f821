#!/usr/bin/env bash
# The longer CPU run of the implicit route (configs/implicit_long.yaml): `scripts/train_long.sh [key=value ...]`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/train.sh configs/implicit_long.yaml "$@"
