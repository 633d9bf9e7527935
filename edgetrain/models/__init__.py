"""Ready-made models and a name registry: ``get_model("lenet")``."""
from __future__ import annotations

from typing import Callable, Dict

from .lenet import LeNet, LeNet5
from .mobilenet import MobileNetV1, MobileNetV2

MODELS: Dict[str, Callable] = {
    "lenet": LeNet,
    "lenet5": LeNet5,
    "mobilenetv1": MobileNetV1,
    "mobilenetv2": MobileNetV2,
}


def get_model(name: str, **kwargs):
    """Build the model registered as ``name`` (case-insensitive, ``-``/``_`` ignored)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[key](**kwargs)


def register_model(name: str, factory: Callable) -> None:
    """Add ``factory`` (a class or function taking keyword arguments) under ``name``."""
    MODELS[name.lower()] = factory


__all__ = ["LeNet", "LeNet5", "MobileNetV1", "MobileNetV2", "get_model", "register_model",
           "MODELS"]
