"""The race: a λ chosen on one search seed, then judged against λ = 0 on fresh seeds.

- `rule`: which run comes next, the incumbent and the verdict, from the runs so far (pure: no torch, no Optuna).
- `runs`: a race's runs read back from the storage (no torch: `status`, `report` and `export` read through it).
- `claim`: the next run decided and started in one transaction (no torch: the storage proxy runs it too).
- `driver`: the worker's loop, each claimed run trained by the sweep's trial machinery.

Nothing is imported here, so reading a race never loads torch.
"""
