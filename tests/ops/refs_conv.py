"""NumPy references for the image ops (nnctl/ops/conv.py), merged into the op table by
tests/ops/test_op_table.py. Written independently of nnctl: explicit loops over output pixels
(and, for max pooling, over every window), padding with np.pad; the sample shapes are small."""

from __future__ import annotations

import numpy as np


def _two(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad(x, padding, fill=0.0):
    ph, pw = _two(padding)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)


def _size(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_geometry(x_shape, w_shape, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = _two(stride), _two(padding), _two(dilation)
    kh, kw = w_shape[2:]
    oh = _size(x_shape[2], kh, sh, ph, dh)
    ow = _size(x_shape[3], kw, sw, pw, dw)
    return oh, ow, sh, sw, dh, dw


def _patch(xpad, p, q, kh, kw, sh, sw, dh, dw):
    """xpad's [N, C, KH, KW] patch seen by output pixel (p, q)."""
    r, c = p * sh, q * sw
    return xpad[:, :, r:r + dh * (kh - 1) + 1:dh, c:c + dw * (kw - 1) + 1:dw]


def conv2d(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    n, o = x.shape[0], w.shape[0]
    oh, ow, sh, sw, dh, dw = _conv_geometry(x.shape, w.shape, stride, padding, dilation)
    xpad = _pad(x, padding)
    cg, og = w.shape[1], o // groups
    y = np.zeros((n, o, oh, ow))
    for p in range(oh):
        for q in range(ow):
            patch = _patch(xpad, p, q, *w.shape[2:], sh, sw, dh, dw)
            for k in range(groups):
                y[:, k * og:(k + 1) * og, p, q] = np.einsum(
                    "nchw,ochw->no", patch[:, k * cg:(k + 1) * cg], w[k * og:(k + 1) * og])
    return y


def conv2d_grad_input(g, w, input_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                      groups=1):
    oh, ow, sh, sw, dh, dw = _conv_geometry(input_shape, w.shape, stride, padding, dilation)
    (ph, pw), (kh, kw) = _two(padding), w.shape[2:]
    n, c, h, wd = input_shape
    dxpad = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    cg, og = w.shape[1], w.shape[0] // groups
    for p in range(oh):
        for q in range(ow):
            view = _patch(dxpad, p, q, kh, kw, sh, sw, dh, dw)  # a view: += writes through
            for k in range(groups):
                view[:, k * cg:(k + 1) * cg] += np.einsum(
                    "no,ochw->nchw", g[:, k * og:(k + 1) * og, p, q], w[k * og:(k + 1) * og])
    return dxpad[:, :, ph:ph + h, pw:pw + wd]


def conv2d_grad_weight(x, g, weight_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                       groups=1):
    oh, ow, sh, sw, dh, dw = _conv_geometry(x.shape, weight_shape, stride, padding, dilation)
    xpad = _pad(x, padding)
    o, cg, kh, kw = weight_shape
    og = o // groups
    dw_ = np.zeros(weight_shape)
    for p in range(oh):
        for q in range(ow):
            patch = _patch(xpad, p, q, kh, kw, sh, sw, dh, dw)
            for k in range(groups):
                dw_[k * og:(k + 1) * og] += np.einsum(
                    "no,nchw->ochw", g[:, k * og:(k + 1) * og, p, q], patch[:, k * cg:(k + 1) * cg])
    return dw_


def _pool_geometry(shape, kernel, stride, padding):
    (kh, kw), (ph, pw) = _two(kernel), _two(padding)
    sh, sw = _two(kernel if stride is None else stride)
    return kh, kw, sh, sw, ph, pw, _size(shape[2], kh, sh, ph), _size(shape[3], kw, sw, pw)


def _first_max(window):
    """(i, j) of the first maximum of a 2-D window in row-major order."""
    best = (0, 0)
    for i in range(window.shape[0]):
        for j in range(window.shape[1]):
            if window[i, j] > window[best]:
                best = (i, j)
    return best


def max_pool2d(x, kernel, stride=None, padding=(0, 0)):
    kh, kw, sh, sw, ph, pw, oh, ow = _pool_geometry(x.shape, kernel, stride, padding)
    xpad = _pad(x, padding, fill=-np.inf)
    y = np.zeros(x.shape[:2] + (oh, ow))
    for p in range(oh):
        for q in range(ow):
            y[:, :, p, q] = xpad[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw].max(axis=(2, 3))
    return y


def _argmax_positions(x, kernel, stride, padding):
    """{(n, c, p, q): (row, col) in x} for each window's first maximum (padding is -inf)."""
    kh, kw, sh, sw, ph, pw, oh, ow = _pool_geometry(x.shape, kernel, stride, padding)
    xpad = _pad(x, padding, fill=-np.inf)
    where = {}
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for p in range(oh):
                for q in range(ow):
                    i, j = _first_max(xpad[n, c, p * sh:p * sh + kh, q * sw:q * sw + kw])
                    where[n, c, p, q] = (p * sh + i - ph, q * sw + j - pw)
    return where


def max_pool2d_grad(g, x, kernel, stride=None, padding=(0, 0)):
    dx = np.zeros(x.shape)
    for (n, c, p, q), (r, s) in _argmax_positions(x, kernel, stride, padding).items():
        dx[n, c, r, s] += g[n, c, p, q]
    return dx


def max_pool2d_gather(v, x, kernel, stride=None, padding=(0, 0)):
    *_, oh, ow = _pool_geometry(x.shape, kernel, stride, padding)
    y = np.zeros(x.shape[:2] + (oh, ow))
    for (n, c, p, q), (r, s) in _argmax_positions(x, kernel, stride, padding).items():
        y[n, c, p, q] = v[n, c, r, s]
    return y


def avg_pool2d(x, kernel, stride=None, padding=(0, 0)):
    kh, kw, sh, sw, ph, pw, oh, ow = _pool_geometry(x.shape, kernel, stride, padding)
    xpad = _pad(x, padding)
    y = np.zeros(x.shape[:2] + (oh, ow))
    for p in range(oh):
        for q in range(ow):
            y[:, :, p, q] = xpad[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw].mean(axis=(2, 3))
    return y


def avg_pool2d_grad(g, input_shape, kernel, stride=None, padding=(0, 0)):
    kh, kw, sh, sw, ph, pw, oh, ow = _pool_geometry(input_shape, kernel, stride, padding)
    n, c, h, w = input_shape
    dxpad = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for p in range(oh):
        for q in range(ow):
            share = g[:, :, p, q, None, None] / (kh * kw)
            dxpad[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw] += share
    return dxpad[:, :, ph:ph + h, pw:pw + w]


def im2col(x, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """cols[(c, i, j), (n, p, q)]: each output pixel's patch, one column per (n, p, q)."""
    n, c = x.shape[:2]
    kh, kw = _two(kernel)
    oh, ow, sh, sw, dh, dw = _conv_geometry(x.shape, (0, 0, kh, kw), stride, padding, dilation)
    xpad = _pad(x, padding)
    cols = np.zeros((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for p in range(oh):
        for q in range(ow):
            patch = _patch(xpad, p, q, kh, kw, sh, sw, dh, dw)  # [N, C, KH, KW]
            cols[:, :, :, :, p, q] = patch.transpose(1, 2, 3, 0)
    return cols.reshape(c * kh * kw, n * oh * ow)


def col2im(cols, input_shape, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """The adjoint of im2col: every column entry added back where it was read from."""
    n, c, h, w = input_shape
    kh, kw = _two(kernel)
    oh, ow, sh, sw, dh, dw = _conv_geometry(input_shape, (0, 0, kh, kw), stride, padding,
                                            dilation)
    ph, pw = _two(padding)
    blocks = cols.reshape(c, kh, kw, n, oh, ow)
    dx = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for p in range(oh):
        for q in range(ow):
            r, k = p * sh, q * sw
            dx[:, :, r:r + dh * (kh - 1) + 1:dh, k:k + dw * (kw - 1) + 1:dw] += \
                blocks[:, :, :, :, p, q].transpose(3, 0, 1, 2)
    return dx[:, :, ph:ph + h, pw:pw + w]


REFERENCES = {
    "im2col": im2col,
    "col2im": col2im,
    "conv2d": conv2d,
    "conv2d_grad_input": conv2d_grad_input,
    "conv2d_grad_weight": conv2d_grad_weight,
    "max_pool2d": max_pool2d,
    "max_pool2d_grad": max_pool2d_grad,
    "max_pool2d_gather": max_pool2d_gather,
    "avg_pool2d": avg_pool2d,
    "avg_pool2d_grad": avg_pool2d_grad,
}

# float32 against a float64 reference: sums of up to C*KH*KW products
F32_TOL = {name: (1e-4, 1e-5) for name in REFERENCES}
