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


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A 1-group, 8-channel x2 SeemoRe saved to a file (random weights, seed 0): fast enough
    for the upscaling and web-app tests."""
    import torch

    from seemore_sr import create_model, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "small-x2.safetensors"
    save_model(create_model("seemore-tiny-x2", num_layers=1, embedding_dim=8), path)
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Exported ONNX graphs go to a cache (``$SEEMORE_CACHE``): the tests' own, not the user's."""
    import os

    old = os.environ.get("SEEMORE_CACHE")
    os.environ["SEEMORE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        del os.environ["SEEMORE_CACHE"]
    else:
        os.environ["SEEMORE_CACHE"] = old
