import pytest

from seemore_sr import create_model
from seemore_sr.models.complexity import count_params, profile_macs

# From the architecture document (fvcore counts, output 1280x720).
PARAMS_K = {
    ("tiny", 2): 220.1, ("tiny", 3): 225.0, ("tiny", 4): 231.8,
    ("base", 2): 490.4, ("base", 3): 496.9, ("base", 4): 506.0,
    ("large", 2): 953.3, ("large", 3): 959.8, ("large", 4): 968.9,
}  # fmt: skip
GMACS = {("tiny", 4): 11.8, ("large", 2): 196.4}


@pytest.mark.parametrize("variant,scale", sorted(PARAMS_K))
def test_params(variant, scale):
    n = count_params(create_model(f"seemore-{variant}-x{scale}"))
    assert round(n / 1e3, 1) == PARAMS_K[variant, scale]


@pytest.mark.parametrize("variant,scale", sorted(GMACS))
def test_gmacs(variant, scale):
    macs = profile_macs(create_model(f"seemore-{variant}-x{scale}"))
    assert round(macs / 1e9, 1) == GMACS[variant, scale]
