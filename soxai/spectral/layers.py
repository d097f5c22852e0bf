"""Singular-value spectra of a network's conv and linear layers, and a Lipschitz upper bound.

A linear layer is the matrix ``W``. A 2-D convolution is two things: its kernel reshaped to a matrix of shape
(c_out, c_in * kh * kw), whose spectrum says how many directions the filters span, and the linear operator
the convolution applies to an image of the layer's input size, whose largest singular value is the layer's
true Lipschitz constant. Sedghi, Gupta and Long (2019, "The singular values of convolutional layers") show
that a circular convolution over an n x m input is block-diagonalised by the 2-D DFT: its singular values
are those of the (c_out x c_in) matrices ``K_hat[u, v]`` of the kernel's DFT at each of the n * m
frequencies. A zero-padded convolution is a block of the circular one on the padded grid, so the same
computation on that grid bounds it from above; a strided one keeps every s-th output of the stride-1
convolution, which cannot raise the norm either. Both are reported as bounds (``operator_norm_exact``).
"""

from __future__ import annotations

import numpy as np

# eval-mode batch norm is a per-channel scale: its Lipschitz constant enters the bound like a layer's
NORM_TYPES = ("BatchNorm1d", "BatchNorm2d")


def matrix_spectrum(weight: np.ndarray) -> np.ndarray:
    """Singular values, largest first, of a weight reshaped to (out_features, everything else).

    Parameters
    ----------
    weight : array of shape (out, in) or (out, in, kh, kw)

    Returns
    -------
    float64 array of shape (min(out, in * kh * kw),)
    """
    w = np.asarray(weight, dtype=np.float64)
    return singular_values(w.reshape(w.shape[0], -1))


def singular_values(m: np.ndarray) -> np.ndarray:
    """Singular values, largest first, of a matrix or a stack of matrices (..., rows, cols), from the
    eigenvalues of the Gram matrix of the shorter side.

    A wide layer (64 x 2048) or ten thousand small FFT blocks cost an SVD many times what the k x k Gram
    eigenproblem costs. The price is absolute accuracy ~ eps * s_max**2 / s on each value: 1e-13 relative
    for a value 1e-3 of the largest, far below what an effective rank or a norm can show.
    """
    m = np.asarray(m)
    gram = m @ np.conj(np.swapaxes(m, -1, -2)) if m.shape[-2] <= m.shape[-1] else np.conj(np.swapaxes(m, -1, -2)) @ m
    eig = np.linalg.eigvalsh(gram)  # ascending, real
    return np.sqrt(np.clip(eig, 0.0, None))[..., ::-1]


def effective_rank(singular_values: np.ndarray) -> float:
    """exp of the Shannon entropy of the singular values normalised to sum 1 (Roy and Vetterli 2007).

    Between 1 (one direction carries everything) and the number of values (all equal); 0 for a zero matrix.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def conv_operator_spectrum(kernel: np.ndarray, input_size: tuple[int, int], groups: int = 1,
                           dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Singular values of the circular 2-D convolution with ``kernel`` over an input of ``input_size``.

    Parameters
    ----------
    kernel : array of shape (c_out, c_in / groups, kh, kw), as ``nn.Conv2d.weight``
    input_size : (n, m), the grid the convolution runs on (for a zero-padded layer: the padded input)
    groups : the layer's groups; the operator is block-diagonal over them
    dilation : the layer's dilation; taps sit ``dilation`` pixels apart

    Returns
    -------
    float64 array of shape (n * m * min(c_out, c_in),), every singular value of the operator, largest first
    """
    k = np.asarray(kernel, dtype=np.float64)
    c_out, c_in_g, kh, kw = k.shape
    n, m = input_size
    dy, dx = dilation
    if (kh - 1) * dy >= n or (kw - 1) * dx >= m:
        raise ValueError(f"a {kh}x{kw} kernel with dilation {dilation} does not fit an input of {n}x{m}")
    grid = np.zeros((c_out, c_in_g, n, m))
    grid[:, :, : kh * dy : dy, : kw * dx : dx] = k
    transfer = np.fft.fft2(grid, axes=(2, 3))  # (c_out, c_in_g, n, m): K_hat at every frequency
    per_group = c_out // groups
    values = []
    for g in range(groups):
        block = transfer[g * per_group : (g + 1) * per_group]  # (per_group, c_in_g, n, m)
        mats = np.moveaxis(block, (0, 1), (2, 3)).reshape(n * m, per_group, c_in_g)
        values.append(singular_values(mats).ravel())
    return np.sort(np.concatenate(values))[::-1]


def _conv_grid(conv, input_size: tuple[int, int]) -> tuple[tuple[int, int], bool]:
    """The grid the FFT runs on for ``conv`` over ``input_size``, and whether its norm is exact there.

    Circular padding at stride 1 is exactly the circular convolution of the input grid. Zero padding by p is a
    block of the circular convolution on the grid padded by p on each side (no tap wraps around there); a
    stride keeps a subset of the outputs: both give an upper bound.
    """
    (kh, kw), (dy, dx) = conv.kernel_size, conv.dilation
    if conv.padding == "same":
        pad = ((kh - 1) * dy, (kw - 1) * dx)
    elif conv.padding == "valid":
        pad = (0, 0)
    else:
        pad = (2 * conv.padding[0], 2 * conv.padding[1])
    stride_one = tuple(conv.stride) == (1, 1)
    if conv.padding_mode == "circular":
        return tuple(input_size), stride_one
    return (input_size[0] + pad[0], input_size[1] + pad[1]), False


def layer_rows(model, input_shape: tuple[int, ...]) -> tuple[list[dict], list[dict]]:
    """One row per conv, linear and batch-norm layer of ``model``, in the order the forward pass reaches them,
    and the layers with weights that the spectral computation does not support (name and type).

    Parameters
    ----------
    model : a torch module in eval mode
    input_shape : (C, H, W) of one input image

    Returns
    -------
    rows : dicts with name, type, kind (conv, linear, norm), weight_shape, input_size, singular_values (of
        the weight reshaped to (out, rest): kernel spectrum), kernel_norm, effective_rank, operator_norm (the
        layer's Lipschitz constant: the FFT norm of a conv over its input, the matrix norm of a linear, the
        largest |gamma| / sqrt(var + eps) of a batch norm) and operator_norm_exact (False: an upper bound)
    skipped : dicts with name, type and why, for every module with parameters of its own that is not one of those
    """
    import torch

    order: list[tuple[str, torch.nn.Module, tuple]] = []
    handles = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        handles.append(module.register_forward_hook(
            lambda mod, inputs, _out, name=name: order.append((name, mod, tuple(inputs[0].shape)))))
    try:
        with torch.no_grad():
            first = next(model.parameters())
            model(torch.zeros(1, *input_shape, dtype=first.dtype, device=first.device))
    finally:
        for handle in handles:
            handle.remove()
    seen = {name for name, _, _ in order}
    rows, skipped = [], []
    done: set[str] = set()
    for name, module, in_shape in order:
        if name in done:  # a module applied twice is one layer
            continue
        done.add(name)
        kind = type(module).__name__
        if isinstance(module, torch.nn.Conv2d) and kind == "Conv2d":
            weight = module.weight.detach().cpu().numpy()
            grid, exact = _conv_grid(module, in_shape[2:4])
            op = conv_operator_spectrum(weight, grid, module.groups, module.dilation)
            rows.append(_row(name, kind, "conv", weight, in_shape[1:], float(op[0]), exact))
        elif isinstance(module, torch.nn.Linear) and kind == "Linear":
            weight = module.weight.detach().cpu().numpy()
            s = matrix_spectrum(weight)
            rows.append(_row(name, kind, "linear", weight, in_shape[1:], float(s[0]), True, s))
        elif kind in NORM_TYPES and module.running_var is not None:
            gamma = module.weight.detach().cpu().numpy() if module.weight is not None else 1.0
            scale = np.abs(gamma) / np.sqrt(module.running_var.detach().cpu().numpy() + module.eps)
            rows.append({"name": name, "type": kind, "kind": "norm", "weight_shape": [int(len(scale))],
                         "input_size": [int(d) for d in in_shape[1:]], "singular_values": np.sort(scale)[::-1].tolist(),
                         "kernel_norm": float(scale.max()), "effective_rank": effective_rank(scale),
                         "operator_norm": float(scale.max()), "operator_norm_exact": True})
        else:
            skipped.append({"name": name, "type": kind,
                            "why": "no spectral rule for this layer type (conv2d, linear and batch norm have one)"})
    for name, module in model.named_modules():  # weights the forward pass never reached
        if list(module.parameters(recurse=False)) and name not in seen:
            skipped.append({"name": name, "type": type(module).__name__,
                            "why": "not reached by the forward pass of one input image"})
    return rows, skipped


def _row(name: str, kind_name: str, kind: str, weight: np.ndarray, in_shape: tuple, operator_norm: float,
         exact: bool, s: np.ndarray | None = None) -> dict:
    s = matrix_spectrum(weight) if s is None else s
    return {"name": name, "type": kind_name, "kind": kind, "weight_shape": [int(d) for d in weight.shape],
            "input_size": [int(d) for d in in_shape], "singular_values": s.tolist(), "kernel_norm": float(s[0]),
            "effective_rank": effective_rank(s), "operator_norm": operator_norm, "operator_norm_exact": exact}


def lipschitz_bound(rows: list[dict]) -> float:
    """Product of the layers' operator norms: an upper bound of the network's Lipschitz constant (l2) when the
    layers form one chain joined by 1-Lipschitz activations and pooling (max, average and ReLU are). A skip
    connection (a residual block) breaks the chain; docs/SPECTRAL.md says what the number means then."""
    return float(np.prod([r["operator_norm"] for r in rows])) if rows else float("nan")
