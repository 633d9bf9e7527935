"""Recurrent layers with PyTorch's names and parameter layout: ``LSTM`` and ``GRU``.

Composites unrolled over the fixed sequence length of the traced input (no op of their own):
per layer the input projection of every time step is one matmul (``[N*T, I] x W_ih^T``), then
each step adds ``h W_hh^T + b_hh``, splits the gates with slices and combines them with
sigmoid / tanh / mul / add; the outputs are stacked (concat). Parameters are
``weight_ih_l{k}`` [G*H, I or H], ``weight_hh_l{k}`` [G*H, H], ``bias_ih_l{k}``,
``bias_hh_l{k}`` [G*H] (G = 4 for LSTM gates i, f, g, o; 3 for GRU gates r, z, n), initialised
uniform(-1/sqrt(H), 1/sqrt(H)) as PyTorch.
"""
from __future__ import annotations

import math

import numpy as np

from .. import tensor_ops as T, tracing
from ..errors import InvalidArgumentError, NotSupportedError
from . import functional as F
from . import init
from .module import Module, Parameter

__all__ = ["LSTM", "GRU"]


class _RNNBase(Module):
    GATES = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0):
        super().__init__()
        name = type(self).__name__
        if bidirectional:
            raise NotSupportedError(f"{name}(bidirectional=True) is not supported")
        if proj_size:
            raise NotSupportedError(f"{name}(proj_size=...) is not supported")
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise InvalidArgumentError(f"{name}: input_size, hidden_size and num_layers must be "
                                       ">= 1")
        if not 0.0 <= dropout < 1.0:
            raise InvalidArgumentError(f"{name}: dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        g = self.GATES * hidden_size
        for k in range(num_layers):
            isz = input_size if k == 0 else hidden_size
            setattr(self, f"weight_ih_l{k}", Parameter(np.zeros((g, isz), np.float32)))
            setattr(self, f"weight_hh_l{k}", Parameter(np.zeros((g, hidden_size), np.float32)))
            if bias:
                setattr(self, f"bias_ih_l{k}", Parameter(np.zeros(g, np.float32)))
                setattr(self, f"bias_hh_l{k}", Parameter(np.zeros(g, np.float32)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}")

    def _layer_params(self, k):
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"),
                getattr(self, f"bias_ih_l{k}") if self.bias else None,
                getattr(self, f"bias_hh_l{k}") if self.bias else None)

    def _check_input(self, x):
        tr = tracing.require()
        x = tr.as_tensor(x)
        if x.ndim != 3 or int(x.shape[2]) != self.input_size:
            raise InvalidArgumentError(
                f"layer '{tr.layer or '<root>'}': {type(self).__name__} expects a 3-D input "
                f"[{'N, T' if self.batch_first else 'T, N'}, {self.input_size}], got shape "
                f"{tuple(x.shape)}")
        return tr, x

    def _steps(self, tr, x, k):
        """Input projections x_t W_ih^T + b_ih of layer k, one [N, G*H] tensor per step."""
        w_ih, _, b_ih, _ = self._layer_params(k)
        t_dim = 1 if self.batch_first else 0
        steps = int(x.shape[t_dim])
        flat = T.reshape(tr, x, (-1, int(x.shape[2])))
        proj = F.linear(flat, w_ih, b_ih)
        g = self.GATES * self.hidden_size
        proj = T.reshape(tr, proj, (-1, steps, g) if self.batch_first else (steps, -1, g))
        return [proj[:, t] if self.batch_first else proj[t] for t in range(steps)]

    def _initial(self, tr, hx, k):
        """Layer k's slice of an initial state [num_layers, N, H] (None: zeros)."""
        return None if hx is None else tr.as_tensor(hx)[k]

    def _sequence(self, tr, hs):
        return T.stack(tr, hs, 1 if self.batch_first else 0)

    def _between_layers(self, tr, y, k):
        if self.dropout and self.training and k < self.num_layers - 1:
            return F.dropout(y, self.dropout, True)
        return y


class LSTM(_RNNBase):
    """``torch.nn.LSTM`` (unidirectional, no projection): returns ``output, (h_n, c_n)``."""
    GATES = 4

    def forward(self, input, hx=None):
        tr, x = self._check_input(input)
        h0, c0 = (None, None) if hx is None else hx
        hn, cn = [], []
        for k in range(self.num_layers):
            _, w_hh, _, b_hh = self._layer_params(k)
            h, c = self._initial(tr, h0, k), self._initial(tr, c0, k)
            hs = []
            for xw in self._steps(tr, x, k):
                gates = xw if h is None else T.add(tr, xw, F.linear(h, w_hh, b_hh))
                if h is None and b_hh is not None:
                    gates = T.add(tr, gates, b_hh)
                i, f, g, o = T.chunk(tr, gates, 4, 1)
                i, f, o = T.sigmoid(tr, i), T.sigmoid(tr, f), T.sigmoid(tr, o)
                ig = T.mul(tr, i, T.tanh(tr, g))
                c = ig if c is None else T.add(tr, T.mul(tr, f, c), ig)
                h = T.mul(tr, o, T.tanh(tr, c))
                hs.append(h)
            hn.append(h)
            cn.append(c)
            x = self._between_layers(tr, self._sequence(tr, hs), k)
        return x, (T.stack(tr, hn, 0), T.stack(tr, cn, 0))


class GRU(_RNNBase):
    """``torch.nn.GRU`` (unidirectional): returns ``output, h_n``."""
    GATES = 3

    def forward(self, input, hx=None):
        tr, x = self._check_input(input)
        hn = []
        for k in range(self.num_layers):
            _, w_hh, _, b_hh = self._layer_params(k)
            h = self._initial(tr, hx, k)
            hs = []
            for xw in self._steps(tr, x, k):
                xr, xz, xn = T.chunk(tr, xw, 3, 1)
                if h is None:   # W_hh h = 0
                    hr = hz = hn_ = None
                    if b_hh is not None:
                        hr, hz, hn_ = T.chunk(tr, b_hh, 3, 0)
                else:
                    hr, hz, hn_ = T.chunk(tr, F.linear(h, w_hh, b_hh), 3, 1)
                r = T.sigmoid(tr, xr if hr is None else T.add(tr, xr, hr))
                z = T.sigmoid(tr, xz if hz is None else T.add(tr, xz, hz))
                n = T.tanh(tr, xn if hn_ is None else T.add(tr, xn, T.mul(tr, r, hn_)))
                # h' = (1 - z) n + z h = n + z (h - n)
                h = T.sub(tr, n, T.mul(tr, z, n)) if h is None else \
                    T.add(tr, n, T.mul(tr, z, T.sub(tr, h, n)))
                hs.append(h)
            hn.append(h)
            x = self._between_layers(tr, self._sequence(tr, hs), k)
        return x, T.stack(tr, hn, 0)
