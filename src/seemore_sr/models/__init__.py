from .registry import VARIANTS, config_for, create_model, list_models
from .seemore import SeemoRe, SeemoReConfig

__all__ = ["VARIANTS", "SeemoRe", "SeemoReConfig", "config_for", "create_model", "list_models"]
