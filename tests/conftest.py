import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GOLDEN = SHARED / "reference" / "golden"
BENCH = SHARED / "data" / "benchmark"


DATA_NAMES = {"GOLDEN", "BENCH", "SHARED", "GOLDEN_FILES"}


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


def _names(fn) -> set[str]:
    return set(getattr(getattr(fn, "__code__", None), "co_names", ()))


def _reads_data(item: pytest.Item) -> bool:
    """Whether a test names the shared data: itself, through a function of its module, or
    through a fixture it uses."""
    fn = getattr(item, "function", None)
    if fn is None:
        return False
    names = _names(fn)
    module = vars(item.module)
    for name in list(names):
        names |= _names(module.get(name))
    for defs in item._fixtureinfo.name2fixturedefs.values():
        for d in defs:
            names |= _names(d.func)
    params = getattr(getattr(item, "callspec", None), "params", {})
    from_shared = any(isinstance(v, Path) and SHARED in v.parents for v in params.values())
    return from_shared or bool(names & DATA_NAMES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ../shared, the tests that read it are skipped (with the reason); the others run."""
    if _have_data():
        return
    skip = pytest.mark.skip(reason=f"needs the shared test data ({SHARED} not found)")
    for item in items:
        if _reads_data(item):
            item.add_marker(skip)


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
