"""The README's finding figures: report figures of the finding studies as small PNGs (headless Chromium).

    python docs/results/figures.py [--storage sqlite:///studies/finding.db] [--chromium chromium]

Writes docs/results/<study>-sweep.png (FID against λ with the λ = 0 control),
<study>-confirmation.png (paired seeds) and compare.png (both sweeps overlaid).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import plotly.graph_objects as go
from optuna.artifacts import FileSystemArtifactStore

from lambda_search.results import figures
from lambda_search.results.compare import gather_comparison
from lambda_search.results.report import gather_report
from lambda_search.sweep.storage import load_study

HERE = Path(__file__).parent
STUDIES = ("finding-generator", "finding-discriminator")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--hide-scrollbars")


def screenshot(figure: go.Figure, path: Path, chromium: str, width: int = 1100, height: int = 440) -> None:
    figure.update_layout(width=width, height=height)
    with tempfile.TemporaryDirectory() as directory:
        page = Path(directory) / "figure.html"
        page.write_text(figure.to_html(include_plotlyjs=True, config={"staticPlot": True}))
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={directory}/profile",
                        f"--screenshot={path.resolve()}", f"--window-size={width + 20},{height + 20}",
                        page.as_uri()], check=True, capture_output=True, timeout=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///studies/finding.db")
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()
    for name in STUDIES:
        study = load_study(args.storage, name)
        # The figures need no artifacts: an empty store stands in for a study run elsewhere.
        with tempfile.TemporaryDirectory() as empty:
            data = gather_report(study, FileSystemArtifactStore(empty))
        screenshot(figures.fid_against_lambda(data), HERE / f"{name}-sweep.png", args.chromium, 700)
        if data.confirmation is not None:
            screenshot(figures.confirmation(data.confirmation), HERE / f"{name}-confirmation.png",
                       args.chromium)
    comparison = gather_comparison(args.storage, list(STUDIES))
    screenshot(figures.compare_fid_against_lambda(comparison), HERE / "compare.png", args.chromium, 900)


if __name__ == "__main__":
    main()
