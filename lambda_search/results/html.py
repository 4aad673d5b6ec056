"""The HTML the report and the comparison share: one page style, tables, settings, decay wording.

Strings in, strings out; every cell is escaped here.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterable, Sequence
from typing import Any

from lambda_search.config import TrainSection

_NETWORKS = {"generator": "generator", "discriminator": "discriminator", "both": "generator and discriminator"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0.2em; } .lead { color: #555; margin-top: 0; } .decay { font-size: 1.1em; margin: 0.3em 0; }
table { border-collapse: collapse; margin: 1em 0; } td, th { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; }
th { text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.best { background: #fde8e8; font-weight: bold; } .verdict { font-size: 1.1em; }
.pair { display: flex; gap: 1em; }
/* A fixed basis: plotly sizes a figure as its script runs, before the second half of the pair exists. */
.pair > div { flex: 0 0 calc(50% - 0.5em); min-width: 0; }
.grids { display: flex; gap: 1.5em; flex-wrap: wrap; } figure { margin: 0; text-align: center; }
figure img { width: 300px; image-rendering: pixelated; border: 1px solid #ccc; }
.js-error { color: #b00; }
"""
# Shows any script error on the page itself: a figure that fails to draw is not silently blank.
_ERROR_HOOK = ("<script>window.addEventListener('error', function (event) { var p = document.createElement('pre');"
               " p.className = 'js-error'; p.textContent = 'JavaScript error: ' + event.message;"
               " document.body.appendChild(p); });</script>")


def format_cell(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def table_html(head: Sequence[str], rows: Iterable[tuple[Sequence[str], bool]], numeric: Sequence[bool]) -> str:
    """An HTML table of escaped cells: `numeric` columns right-aligned, rows flagged True marked best."""
    header = "".join(f"<th>{html.escape(title)}</th>" for title in head)
    body = "".join(
        f'<tr{" class=best" if best else ""}>'
        + "".join(f"<td class=n>{html.escape(cell)}</td>" if is_number else f"<td>{html.escape(cell)}</td>"
                  for cell, is_number in zip(cells, numeric, strict=True))
        + "</tr>"
        for cells, best in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def page_html(title: str, *parts: str) -> str:
    """One self-contained page: the report's style, the script-error hook, `title` as its heading, then `parts`."""
    escaped = html.escape(title)
    return "\n".join([
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escaped}</title><style>{_STYLE}</style></head>",
        f"<body>{_ERROR_HOOK}<h1>{escaped}</h1>", *parts, "</body></html>",
    ])


def settings_html(title: str, values: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
                   for key, value in values.items())
    return f"<h3>{html.escape(title)}</h3><table>{rows}</table>"


def section_html(title: str, section: Any) -> str:
    """A config section (one of `config`'s dataclasses) as a two-column table under `title`."""
    return settings_html(title, dataclasses.asdict(section))


def decay_setting(train: TrainSection) -> str:
    """Where and how λ decays, as the study file says it: ``apply_to = …, decay_mode = …, penalize = …``."""
    return f"apply_to = {train.apply_to}, decay_mode = {train.decay_mode}, penalize = {train.penalize}"


def decay_description(train: TrainSection) -> str:
    """What `decay_setting` means, in words."""
    networks = _NETWORKS[train.apply_to]
    tensors = "conv and linear kernels only" if train.penalize == "weights" else "every parameter"
    if train.decay_mode == "decoupled":
        return f"decoupled (AdamW-style) decay w ← w − lr·λ·w on the {networks} ({tensors})"
    return f"λ·Σ‖w‖² added to the loss of the {networks} ({tensors})"
