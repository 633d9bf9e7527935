"""Exceptions raised by edgetrain. Each maps one C status code (``et_status``).

All derive from :class:`EdgetrainError` and from the built-in exception a Python user would
expect (a corrupt model file is a ``ValueError``, an unreadable one an ``OSError``...).
"""


class EdgetrainError(Exception):
    """Base class of every edgetrain error."""


class InvalidArgumentError(EdgetrainError, ValueError):
    """ET_ERR_ARG: an argument or attribute is invalid."""


class ShapeError(EdgetrainError, ValueError):
    """ET_ERR_SHAPE: shapes do not agree."""


class DTypeError(EdgetrainError, TypeError):
    """ET_ERR_DTYPE: wrong element type."""


class LabelError(EdgetrainError, ValueError):
    """ET_ERR_LABEL: a class label is outside [0, num_classes)."""


class ModelFormatError(EdgetrainError, ValueError):
    """ET_ERR_FORMAT: the model file is corrupt, truncated or of an unsupported version."""


class ModelIOError(EdgetrainError, OSError):
    """ET_ERR_IO: a file could not be read or written."""


class UnsupportedError(EdgetrainError, NotImplementedError):
    """ET_ERR_UNSUPPORTED: the op, ISA or feature is not available."""


class SessionStateError(EdgetrainError, RuntimeError):
    """ET_ERR_STATE: the call is not valid in the session's current state."""


class NotFoundError(EdgetrainError, KeyError):
    """ET_ERR_NOT_FOUND: no tensor / input / output of that name."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ResourceLimitError(EdgetrainError, MemoryError):
    """ET_ERR_LIMIT: the plan needs more memory than the session's limit (``max_memory``), or
    another resource limit would be exceeded; nothing was allocated."""


class NonFiniteError(EdgetrainError, FloatingPointError):
    """ET_ERR_NONFINITE: a training step met a NaN or Inf loss or gradient. The message names
    the step; nothing was updated (weights, optimizer state, BatchNorm statistics, step)."""


class NotDifferentiableError(EdgetrainError, ValueError):
    """An op on the path to a trainable parameter has no gradient (export time)."""


class DeviceError(EdgetrainError, RuntimeError):
    """A federated device client failed: the transport (adb) or et_train reported an error."""


# status code -> exception class (order of enum et_status)
STATUS_ERRORS = {
    1: InvalidArgumentError,
    2: ShapeError,
    3: DTypeError,
    4: LabelError,
    5: MemoryError,
    6: ModelFormatError,
    7: ModelIOError,
    8: UnsupportedError,
    9: InvalidArgumentError,
    10: SessionStateError,
    11: NotFoundError,
    12: ResourceLimitError,
    13: NonFiniteError,
}


def error_for_status(status: int, message: str) -> Exception:
    cls = STATUS_ERRORS.get(status, EdgetrainError)
    return cls(message)


class NotSupportedError(UnsupportedError, AttributeError):
    """A PyTorch construct edgetrain cannot trace (a tensor method or attribute it lacks,
    advanced indexing, a padding mode...). The message names the construct and the layer.
    It is also an ``AttributeError``, so ``hasattr`` / ``getattr(x, name, default)`` on a traced
    tensor keep their meaning."""
