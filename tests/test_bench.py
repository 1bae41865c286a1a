"""The benchmark script (benchmarks/bench.py) at least starts: its timings are not tests."""
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def test_the_benchmark_parses_help():
    proc = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--repeat" in proc.stdout and "--transports" in proc.stdout
