from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GOLDEN = SHARED / "reference" / "golden"
BENCH = SHARED / "data" / "benchmark"


def pytest_sessionstart(session: pytest.Session) -> None:
    # Golden vectors and benchmark images are test inputs: without them, fail loudly
    # instead of collecting empty parametrisations.
    if not GOLDEN.is_dir() or not BENCH.is_dir() or not list(GOLDEN.glob("*.safetensors")):
        pytest.exit(f"tests need ../shared beside the repository ({SHARED} not found)", returncode=1)
