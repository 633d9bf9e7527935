"""``edgetrain.nn``: a PyTorch-like way to write models that edgetrain traces and trains."""
from . import functional, init
from .layers import (ELU, GELU, Add, AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout,
                     Flatten, Hardsigmoid, Hardswish, Identity, LeakyReLU, Linear, LogSoftmax,
                     MaxPool2d, ModuleList, ReLU, ReLU6, Sequential, Sigmoid, SiLU, Softmax,
                     Softplus, Tanh)
from .layers import Embedding
from .layers import (AdaptiveMaxPool2d, Conv1d, ConvTranspose2d, Upsample,
                     UpsamplingBilinear2d, UpsamplingNearest2d)
from .loss import (CrossEntropyLoss, DistillLoss, HingeLoss, KLDivLoss, L1Loss, MSELoss,
                   MultiMarginLoss)
from .loss import BCELoss, BCEWithLogitsLoss, HuberLoss, NLLLoss, SmoothL1Loss
from .module import Buffer, Module, Parameter
from .recurrent import GRU, LSTM

__all__ = ["functional", "init", "Module", "Parameter", "Buffer", "Conv2d", "Linear",
           "BatchNorm2d", "Dropout", "ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh",
           "Hardswish", "SiLU", "GELU", "Hardsigmoid", "ELU", "Softplus", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Sequential",
           "ModuleList", "Identity", "Softmax", "LogSoftmax", "Add", "CrossEntropyLoss",
           "MSELoss", "L1Loss", "HingeLoss", "MultiMarginLoss", "KLDivLoss", "DistillLoss",
           "Embedding", "BCELoss", "BCEWithLogitsLoss", "NLLLoss", "SmoothL1Loss", "HuberLoss",
           "Conv1d", "ConvTranspose2d", "Upsample", "UpsamplingNearest2d",
           "UpsamplingBilinear2d", "AdaptiveMaxPool2d"]

# normalisation over trailing dims, BatchNorm1d, PReLU
from .layers import (BatchNorm1d, GroupNorm, InstanceNorm2d, LayerNorm,  # noqa: E402
                     MultiheadAttention, PReLU)

__all__ += ["LayerNorm", "GroupNorm", "InstanceNorm2d", "BatchNorm1d", "PReLU",
            "MultiheadAttention"]
__all__ += ["LSTM", "GRU"]
