#!/usr/bin/env bash
# The MNIST finding in the README: for apply_to = generator and = discriminator, a 16-trial
# sweep with the λ = 0 control, then the top 3 λ and the control re-trained with 7 paired seeds (never the sweep's seed).
# Everything lands in studies/finding.db (studies finding-*, finding-*.control, finding-*.confirm).
#   bash docs/results/finding.sh            # a few minutes on one H200; about 10 hours on a 2-core CPU
set -euo pipefail
cd "$(dirname "$0")/../.."
LAMBDA_SEARCH="${LAMBDA_SEARCH:-lambda-search}"
STORAGE=sqlite:///studies/finding.db
for network in generator discriminator; do
  $LAMBDA_SEARCH run "studies/finding-$network.toml"
  $LAMBDA_SEARCH confirm --storage "$STORAGE" --study "finding-$network" --top 3 --seeds 7
done
