"""The stored records: what a study and its trials hold in the storage, as typed data. No torch.

The write side (`sweep`) and the read side (`results`) both read and write trials through
these names, so neither reaches into the other: `keys` names every stored attribute once,
`trials` reads a study's config, finished and best trials and control run, `confirmation`
is the typed result of `confirm`'s runs, `export` the export file as one record (written by
`results.export`, read by `train` and `lambda_search.load_export`).
"""
