"""The repository is the product: no file over 5 MB, no training state outside the allowlist."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 5 * 2**20
# Pickled training states that may be tracked, and why. Runs in progress are never committed:
# a run is planned to finish within a session, and one cut off keeps at most its weights.
ALLOWED_STATES = {
    "campaign/trunk/state.pt": "the long x2 trunk's resumable state (4 MB), replaced only when the trunk moves on",
}


def tracked() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def test_no_tracked_file_is_over_5_mb():
    big = [(p, (ROOT / p).stat().st_size) for p in tracked() if (ROOT / p).is_file()]
    big = [f"{p} ({n / 2**20:.1f} MB)" for p, n in big if n > MAX_BYTES]
    assert not big, f"tracked files over 5 MB: {big}"


def test_no_training_state_outside_the_allowlist():
    states = [p for p in tracked() if p.endswith((".pt", ".pth", ".ckpt"))]
    stray = sorted(set(states) - set(ALLOWED_STATES))
    assert not stray, f"training states tracked outside the allowlist (tests/test_repository.py): {stray}"
