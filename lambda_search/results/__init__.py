"""The read side: a finished study read back as typed data, then tables, figures, report, export, dashboard.

Imports no torch, so `status`, `report` and `export` start fast.
"""
