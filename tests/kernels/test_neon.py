"""The NEON kernels and the dispatch table's aarch64 choices, cross-compiled for aarch64 and run
under qemu-user (tests/neon/, `make neon-test`)."""
import shutil
import subprocess
from pathlib import Path

import pytest

NEON_DIR = Path(__file__).resolve().parent.parent / "neon"


def test_neon_kernels_match_reference_under_qemu():
    missing = [tool for tool in ("aarch64-linux-gnu-gcc", "qemu-aarch64", "make") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install gcc-aarch64-linux-gnu "
                    "libc6-dev-arm64-cross qemu-user)")
    proc = subprocess.run(["make", "-s", "-C", str(NEON_DIR), "run"], capture_output=True, text=True, timeout=300)
    summary = [line for line in proc.stdout.splitlines() if line.startswith("neon:")]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert summary and " 0 failed" in summary[-1], proc.stdout[-4000:]
