# Sourced by the Slurm scripts: the packed weight store (docs/weights.md, "On a cluster").
# WEIGHT_STORE=DIR (exported to the job) becomes `--weight-store DIR` on every moetrace command that
# loads the model; unset, the config's [model] weight_store applies (or none: packed at every start).
# DIR is best node-local (e.g. /tmp/$USER/moetrace-store or $SLURM_TMPDIR): the first rank of each node
# builds the store once under a lock (the others wait), every later job step maps it in seconds. On a
# shared file system with working flock, one build serves every node.
weight_store_args=()
if [[ -n "${WEIGHT_STORE:-}" ]]; then
  weight_store_args=(--weight-store "$WEIGHT_STORE")
fi
