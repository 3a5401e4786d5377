"""Archives at scale: `plankton-stream reprocess` classifies exports already on disk with the
live service's own functions (reader, `prepare_particle`, engines, k-NN, event builders) and
writes a partitioned Parquet dataset, on one machine or on a Ray cluster.

jobs      which exports (formats.discovery), their signatures and output keys
table     Arrow schemas and rows, derived from the message dataclasses
work      one export -> FileResult (the code path both modes run)
store     the dataset on disk: atomic parts, manifest, resume
local     the one-process streaming run
ray_run   the same functions as Ray Data CPU tasks and an encoder actor pool
run       a whole run: find, skip what is done, classify, commit, summarise
"""
