import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GOLDEN = SHARED / "reference" / "golden"
BENCH = SHARED / "data" / "benchmark"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a fresh module (the scripts folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _have_data() -> bool:
    return GOLDEN.is_dir() and BENCH.is_dir() and bool(list(GOLDEN.glob("*.safetensors")))


def pytest_sessionstart(session: pytest.Session) -> None:
    # CI sets SEEMORE_SHARED=required: there, missing golden vectors or benchmark images
    # stop the session loudly instead of skipping the tests that read them.
    if os.environ.get("SEEMORE_SHARED") == "required" and not _have_data():
        pytest.exit(f"tests need ../shared beside the repository ({SHARED} not found)", returncode=1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ../shared, the tests marked ``shared`` (they read the golden vectors or the
    benchmark images) are skipped with the reason; the others run."""
    if _have_data():
        return
    skip = pytest.mark.skip(reason=f"needs the shared test data ({SHARED} not found)")
    for item in items:
        if item.get_closest_marker("shared"):
            item.add_marker(skip)


_BANDS = {"L": (), "LA": (2,), "RGB": (3,), "RGBA": (4,)}


def write_image(path: Path, size=(40, 44), mode: str = "RGB", *, seed: int = 0, **save) -> Path:
    """A random-noise image of ``size`` (width, height, as Pillow's) and ``mode`` (L, LA, RGB,
    RGBA) at ``path``, its folders made; ``save`` goes to ``Image.save`` (``quality=95``...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], *_BANDS[mode]), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **save)
    return path


@pytest.fixture
def random_images():
    """``random_images(folder, n, size=(w, h), mode="RGB", name="{i}.png", **save)`` writes
    ``n`` random-noise images (image ``i`` from seed ``seed + i``) and returns their paths."""

    def write(folder: Path, n: int = 1, size=(40, 44), mode="RGB", *, name="{i}.png", seed=0, **save):
        return [write_image(Path(folder) / name.format(i=i), size, mode, seed=seed + i, **save) for i in range(n)]

    return write


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
