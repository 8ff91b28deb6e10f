"""The README quotes measured figures from the generated RESULTS.md only: every number with three or
more decimals in the README must stand in RESULTS.md (``make results`` writes it; see its header)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_figure_in_the_readme_is_in_results():
    readme, results = (ROOT / "README.md").read_text(), (ROOT / "RESULTS.md").read_text()
    figures = set(re.findall(r"(?<![\w.])\d+\.\d{3,}(?!\d)", readme))
    assert len(figures) >= 10  # the headline table alone has more: the pattern still finds them
    missing = sorted(f for f in figures if f not in results)
    assert not missing, f"README figures not in RESULTS.md (regenerate, or quote what is there): {missing}"
