"""``edgetrain.nn``: a PyTorch-like way to write models that edgetrain traces and trains."""
from . import functional, init
from .layers import (ELU, GELU, Add, AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout,
                     Flatten, Hardsigmoid, Hardswish, Identity, LeakyReLU, Linear, LogSoftmax,
                     MaxPool2d, ModuleList, ReLU, ReLU6, Sequential, Sigmoid, SiLU, Softmax,
                     Softplus, Tanh)
from .loss import (CrossEntropyLoss, DistillLoss, HingeLoss, KLDivLoss, L1Loss, MSELoss,
                   MultiMarginLoss)
from .module import Buffer, Module, Parameter
from .recurrent import GRU, LSTM

__all__ = ["functional", "init", "Module", "Parameter", "Buffer", "Conv2d", "Linear",
           "BatchNorm2d", "Dropout", "ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh",
           "Hardswish", "SiLU", "GELU", "Hardsigmoid", "ELU", "Softplus", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Sequential",
           "ModuleList", "Identity", "Softmax", "LogSoftmax", "Add", "CrossEntropyLoss",
           "MSELoss", "L1Loss", "HingeLoss", "MultiMarginLoss", "KLDivLoss", "DistillLoss",
           "LSTM", "GRU"]
