"""Names vulture (`make lint`) reports as unused that something outside our code calls or reads.

Never imported or run: vulture reads it beside the package, tests, bench and examples.
"""
# ruff: noqa

# torch calls these: Module.__call__ → forward; torch.backends reads the flag.
_.forward
_.benchmark
output_size  # gan/batched_conv.py: ConvTranspose2d.forward's signature, which the fused layer keeps
# Python calls these: a module's lazy attributes, signal handlers' and __exit__'s fixed signatures.
__getattr__
__dir__
frame
exc_info
# Optuna reads it: claim.start_trials clears the cache `ask` clears.
_.cached_all_trials
# Written into every trial's FID protocol by dataclasses.asdict; read back by the read side as stored dicts.
dataset_fingerprint
image_dtype
statistics_dtype
# pytest reads these: module marks, autouse fixtures, fixtures a test requests only for their effect.
pytestmark
_shared_cache
_one_thread_from_the_root
_from_the_root
_one_thread
_no_pause
exact_kernels
restore_threads
# Optuna's ArtifactStore protocol: the read-only dashboard's store refuses write(artifact_id, content_body).
content_body
