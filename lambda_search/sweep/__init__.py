"""The sweep: the Optuna study, its trials (lone and fused), the λ = 0 control and the confirmation runs.

`storage` is the one module that touches Optuna's private API and raw SQL.
"""
