"""The seed path stays readable: at most 500 lines of core code (scripts/core_lines.py)."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "core_lines.py"


def test_the_seed_path_is_at_most_500_lines_of_core_code():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "in all (at most 500)" in out.stdout


def test_pipeline_imports_no_feature():
    source = (SCRIPT.parents[1] / "pystributed" / "pipeline.py").read_text(encoding="utf-8")
    assert "features" not in "".join(line for line in source.splitlines() if line.startswith(("import", "from")))
