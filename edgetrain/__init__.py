"""edgetrain — train neural networks on the device where they are used.

Write a model with :mod:`edgetrain.nn` (PyTorch-like), turn it into one ``.etm`` training
program, and train it with :class:`TrainSession` — from Python here, or with the same C
runtime on an Android phone.
"""
__version__ = "0.1.0"

from . import errors
from .errors import (EdgetrainError, ModelFormatError, ShapeError, DTypeError, LabelError,
                     NotDifferentiableError, NonFiniteError, ResourceLimitError)
from . import nn, optim
from .nn.init import manual_seed
from .nn.functional import (cat, chunk, concat, gather, index_select, narrow, permute, split,
                            squeeze, stack, transpose, unsqueeze)


def __getattr__(name):
    """``TrainSession`` loads the compiled runtime on first use, so ``edgetrain.nn`` and
    ``edgetrain.data`` import without a build."""
    if name == "TrainSession":
        from .session import TrainSession
        return TrainSession
    raise AttributeError(f"module 'edgetrain' has no attribute {name!r}")


__all__ = ["TrainSession", "nn", "optim", "errors", "EdgetrainError", "ModelFormatError",
           "ShapeError", "DTypeError", "LabelError", "NotDifferentiableError", "NonFiniteError",
           "ResourceLimitError",
           "manual_seed",
           "cat", "concat", "stack", "split", "chunk", "narrow", "transpose", "permute",
           "squeeze", "unsqueeze", "gather", "index_select",
           "__version__"]
