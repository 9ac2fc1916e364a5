"""Image ops on [N, C, H, W] arrays: conv2d, max_pool2d, avg_pool2d and their backward ops.

Every op here reads its input through one strided view (`_windows`, im2col without a copy):
v[n, c, i, j, p, q] = xpad[n, c, p*sh + i*dh, q*sw + j*dw] for kernel offset (i, j) and output
pixel (p, q). conv2d copies that view into columns once and does one batched matmul; the
backward ops add columns back into a padded buffer with one strided slice per kernel offset
(`_scatter_windows`, the adjoint of `_windows`), except that with stride 1 the two conv
backward ops skip the column matrix (the NOTE above `_flat_input`). The backward ops are
bilinear (conv) or linear (pooling), and each one's vjp is written with its siblings, so
gradients of gradients stay in this family. Loops run over the KH*KW kernel offsets only.

On a device array module (CuPy; `window_kernels.is_device`) every Python iteration is a kernel
launch or more, so those loops are gone there, with the same sums in the same order:
`_scatter_windows` is col2im as one gather kernel (each element of x adds its column entries
over the offsets in row-major order, from zero: the strided adds' order, so their bits), and
the stride-one backward ops run their per-offset GEMMs as the batch of one matmul on a strided
view (`_stride_one_batched`: the same operand layouts, so the same products), the input
gradient then adding them with col2im. The CPU path is unchanged; tests/ops/test_conv_device.py
and test_window_kernels.py check the device path against it.
"""

from __future__ import annotations

from nnctl.ops.registry import Aval, Op, Sample, fail, register, require_float, same_dtype
from nnctl.ops.window_kernels import col2im, is_device


# ---- geometry --------------------------------------------------------------------------------

def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum
                             for v in pair):
        fail(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return pair


def _out_len(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_shape(x, w, stride, padding, dilation, groups) -> tuple[int, ...]:
    """[N, O, OH, OW] of conv2d(x, w) for the shapes x and w, or a ShapeError naming them."""
    if len(x) != 4:
        fail(f"conv2d needs x as [N, C, H, W], got {list(x)}")
    if len(w) != 4:
        fail(f"conv2d needs w as [O, C/groups, KH, KW], got {list(w)}")
    if not isinstance(groups, int) or groups < 1:
        fail(f"groups must be a positive int, got {groups!r}")
    (n, c, h, wd), (o, cg, kh, kw) = x, w
    if c % groups or o % groups:
        fail(f"groups={groups} must divide the channels of x {list(x)} ({c}) and "
             f"the output channels of w {list(w)} ({o})")
    if cg * groups != c:
        fail(f"w {list(w)} takes {cg} input channels per group, but x {list(x)} has "
             f"{c // groups} per group with groups={groups}")
    (sh, sw), (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    dh, dw = _pair(dilation, "dilation", 1)
    oh, ow = _out_len(h, kh, sh, ph, dh), _out_len(wd, kw, sw, pw, dw)
    if oh < 1 or ow < 1:
        fail(f"kernel of w {list(w)} with dilation ({dh}, {dw}) spans "
             f"{dh * (kh - 1) + 1}x{dw * (kw - 1) + 1}, larger than x {list(x)} padded by "
             f"({ph}, {pw}) ({h + 2 * ph}x{wd + 2 * pw})")
    return (n, o, oh, ow)


def _pool_shape(x, kernel, stride=None, padding=(0, 0)) -> tuple[int, ...]:
    """[N, C, OH, OW] of pooling x, or a ShapeError naming the shapes."""
    if len(x) != 4:
        fail(f"pooling needs x as [N, C, H, W], got {list(x)}")
    kh, kw = _pair(kernel, "kernel", 1)
    sh, sw = _pair(kernel if stride is None else stride, "stride", 1)
    ph, pw = _pair(padding, "padding", 0)
    if ph > kh // 2 or pw > kw // 2:  # so that every window holds at least one element of x
        fail(f"padding ({ph}, {pw}) must be at most half of kernel ({kh}, {kw})")
    oh, ow = _out_len(x[2], kh, sh, ph, 1), _out_len(x[3], kw, sw, pw, 1)
    if oh < 1 or ow < 1:
        fail(f"kernel ({kh}, {kw}) is larger than x {list(x)} padded by ({ph}, {pw})")
    return (x[0], x[1], oh, ow)


def _windows(xp, x, kernel, stride, padding, dilation, out_hw, fill=0.0):
    """The view v[n, c, i, j, p, q] = xpad[n, c, p*sh + i*dh, q*sw + j*dw]: [N, C, KH, KW, OH, OW].

    Read-only by contract: its elements alias each other."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    sn, sc, s_h, s_w = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(x.shape[0], x.shape[1], kh, kw) + tuple(out_hw),
        strides=(sn, sc, s_h * dh, s_w * dw, s_h * sh, s_w * sw))


def _scatter_windows(xp, cols, input_shape, stride, padding, dilation):
    """The adjoint of `_windows`: add cols [N, C, KH, KW, OH, OW] into x's padded positions.
    On a device array module: one gather kernel with the same sums (window_kernels.col2im)."""
    if is_device(xp):
        return col2im(xp, cols, tuple(input_shape), stride, padding, dilation)
    n, c, h, w = input_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    kh, kw, oh, ow = cols.shape[2:]
    dx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):  # one strided add per kernel offset; each is vectorised over pixels
        for j in range(kw):
            dx[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
               j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
    return dx[:, :, ph:ph + h, pw:pw + w]


# NOTE: with stride 1 the conv backward ops need no column matrix. In a flattened padded
# image (row length Wp), kernel offset (i, j) takes output position t = p*Wp + q to input
# position t + i*dh*Wp + j*dw: one contiguous slice per offset, which BLAS reads in place.
# Positions with q >= OW (or p >= OH) wrap into the next row (or image); g is zero there, so
# they add nothing. KH*KW matmuls on operands the size of x and g beat one matmul on a
# KH*KW-times-larger column matrix that has to go through memory (docs/performance.md).

def _pad_into(xpad, x, padding):
    """x zero-padded by (ph, pw) into the preallocated xpad (a workspace: only its border is
    zeroed, the inside is x)."""
    (ph, pw), (h, w) = padding, x.shape[2:]
    xpad[:, :, :ph], xpad[:, :, ph + h:], xpad[:, :, :, :pw], xpad[:, :, :, pw + w:] = 0, 0, 0, 0
    xpad[:, :, ph:ph + h, pw:pw + w] = x
    return xpad


def _flat_input(xp, x, padding):
    """x zero-padded, plus one spare row (the last offset's slice runs past the end), as
    [N, C, (Hp + 1) * Wp]."""
    n, c, h, w = x.shape
    ph, pw = padding
    buf = xp.zeros((n, c, h + 2 * ph + 1, w + 2 * pw), dtype=x.dtype)
    buf[:, :, ph:ph + h, pw:pw + w] = x
    return buf.reshape(n, c, -1)


def _flat_operands(xp, x, g, weight_shape, padding, groups):
    """The stride-one weight gradient's operands: x flat [N, groups, C/groups, (Hp+1)*Wp],
    g flat [N, groups, O/groups, OH*Wp], the padded row length Wp and the span OH*Wp."""
    n = x.shape[0]
    o, cg = weight_shape[:2]
    row = x.shape[3] + 2 * padding[1]
    span = g.shape[2] * row
    xf = _flat_input(xp, x, padding).reshape(n, groups, cg, -1)
    gy = _flat_grad(xp, g, row).reshape(n, groups, o // groups, span)
    return xf, gy, row, span


def _flat_grad(xp, g, row):
    """g [N, O, OH, OW] with zero columns up to `row`, as [N, O, OH * row]."""
    n, o, oh, ow = g.shape
    buf = xp.zeros((n, o, oh, row), dtype=g.dtype)
    buf[..., :ow] = g
    return buf.reshape(n, o, oh * row)


def _conv_attrs(stride, padding, dilation):
    return _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)


# ---- convolution -----------------------------------------------------------------------------

@register
class Conv2d(Op):
    """y[n,o,p,q] = sum_{c,i,j} xpad[n, c, p*sh + i*dh, q*sw + j*dw] w[o, c, i, j] over o's group
    (cross-correlation, as PyTorch);  dx = conv2d_grad_input(g, w), dw = conv2d_grad_weight(x, g)"""
    name = "conv2d"
    arity = 2

    def infer(self, x: Aval, w: Aval, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
              groups=1) -> Aval:
        require_float(x, "x")
        dtype = same_dtype(x, w)
        return Aval(_conv_shape(x.shape, w.shape, stride, padding, dilation, groups), dtype)

    def forward(self, xp, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        n, o, oh, ow = _conv_shape(x.shape, w.shape, stride, padding, dilation, groups)
        stride, padding, dilation = _conv_attrs(stride, padding, dilation)
        k = w.shape[1] * w.shape[2] * w.shape[3]
        view = _windows(xp, x, w.shape[2:], stride, padding, dilation, (oh, ow))
        cols = view.reshape(n, groups, k, oh * ow)  # im2col: the one copy of the input
        y = w.reshape(groups, o // groups, k) @ cols  # [N, groups, O/groups, OH*OW]
        return y.reshape(n, o, oh, ow)

    def workspace(self, x: Aval, w: Aval, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                  groups=1):
        n, o, oh, ow = _conv_shape(x.shape, w.shape, stride, padding, dilation, groups)
        ph, pw = _pair(padding, "padding", 0)
        k = w.shape[1] * w.shape[2] * w.shape[3]
        cols = Aval((n, groups, k, oh * ow), x.dtype)
        if not (ph or pw):
            return (cols,)
        return cols, Aval((n, x.shape[1], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), x.dtype)

    def forward_into(self, xp, out, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                     groups=1, work=None):
        # forward's im2col and GEMM, with the padded input and the columns in the arena and
        # the GEMM writing y in place: [N, groups, O/groups, OH*OW] is y's own layout
        n, o, oh, ow = out.shape
        stride, padding, dilation = _conv_attrs(stride, padding, dilation)
        (ph, pw), (kh, kw) = padding, w.shape[2:]
        cols = work[0]
        if ph or pw:
            x, padding = _pad_into(work[1], x, padding), (0, 0)
        view = _windows(xp, x, (kh, kw), stride, padding, dilation, (oh, ow))
        xp.copyto(cols.reshape(view.shape), view)
        xp.matmul(w.reshape(groups, o // groups, cols.shape[2]), cols,
                  out=out.reshape(n, groups, o // groups, oh * ow))
        return out

    def vjp(self, g, out, x, w, **attrs):
        return (g.apply("conv2d_grad_input", w, input_shape=x.shape, **attrs),
                x.apply("conv2d_grad_weight", g, weight_shape=w.shape, **attrs))

    def samples(self):
        for x, w, attrs in CONV_CASES:
            yield Sample(shapes=(x, w), attrs=attrs)


@register
class Conv2dGradInput(Op):
    """dx = the adjoint of x -> conv2d(x, w) applied to g (col2im of w^T g);
    bilinear: d/dg = conv2d(v, w), d/dw = conv2d_grad_weight(v, g)"""
    name = "conv2d_grad_input"
    arity = 2

    def infer(self, g: Aval, w: Aval, input_shape, stride=(1, 1), padding=(0, 0),
              dilation=(1, 1), groups=1) -> Aval:
        require_float(g, "g")
        dtype = same_dtype(g, w)
        expected = _conv_shape(tuple(input_shape), w.shape, stride, padding, dilation, groups)
        if g.shape != expected:
            fail(f"g {list(g.shape)} is not the conv2d output shape {list(expected)} of x "
                 f"{list(input_shape)} and w {list(w.shape)}")
        return Aval(tuple(input_shape), dtype)

    def forward(self, xp, g, w, input_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                groups=1):
        stride, padding, dilation = _conv_attrs(stride, padding, dilation)
        if stride == (1, 1):
            one = self._stride_one_batched if is_device(xp) else self._stride_one
            return one(xp, g, w, tuple(input_shape), padding, dilation, groups)
        cols = self._columns(g, w, groups)
        return _scatter_windows(xp, cols, tuple(input_shape), stride, padding, dilation)

    @staticmethod
    def _columns(g, w, groups):
        """w^T g as columns [N, C, KH, KW, OH, OW]: one (batched) GEMM."""
        n, o, oh, ow = g.shape
        _, cg, kh, kw = w.shape
        wt = w.reshape(groups, o // groups, cg * kh * kw).swapaxes(-1, -2)
        cols = wt @ g.reshape(n, groups, o // groups, oh * ow)  # [N, groups, K, OH*OW]
        return cols.reshape(n, groups * cg, kh, kw, oh, ow)

    @staticmethod
    def _stride_one(xp, g, w, input_shape, padding, dilation, groups):
        # all images in one flat row per channel, so each offset is one large matmul
        n, c, h, wd = input_shape
        (ph, pw), (dh, dw) = padding, dilation
        o, cg, kh, kw = w.shape
        hp, wp = h + 2 * ph, wd + 2 * pw
        span = n * hp * wp
        gy = xp.zeros((o, n, hp, wp), dtype=g.dtype)
        gy[:, :, :g.shape[2], :g.shape[3]] = g.transpose(1, 0, 2, 3)
        gy = gy.reshape(groups, o // groups, span)
        wt = w.reshape(groups, o // groups, cg, kh, kw)
        dx = xp.zeros((c, n + 1, hp, wp), dtype=g.dtype)  # a spare image: slices run past n
        flat = dx.reshape(groups, cg, -1)
        for i in range(kh):
            for j in range(kw):
                at = i * dh * wp + j * dw
                flat[..., at:at + span] += wt[:, :, :, i, j].swapaxes(-1, -2) @ gy
        return xp.ascontiguousarray(dx[:, :n, ph:ph + h, pw:pw + wd].transpose(1, 0, 2, 3))

    @staticmethod
    def _stride_one_batched(xp, g, w, input_shape, padding, dilation, groups, out=None):
        # `_stride_one` for device arrays, without its loop: every offset's product is one
        # batch element of one matmul (the loop's GEMMs, on the same operand layouts, so the
        # same sums), and col2im's gather adds them per pixel in the loop's offset order,
        # from zero (a product that lands on g's zero padding is +0 and adds nothing)
        n, c, h, wd = input_shape
        ph, pw = padding
        o, cg, kh, kw = w.shape
        og, hp, wp = o // groups, h + 2 * ph, wd + 2 * pw
        span = n * hp * wp
        gy = xp.zeros((o, n, hp, wp), dtype=g.dtype)
        gy[:, :, :g.shape[2], :g.shape[3]] = g.transpose(1, 0, 2, 3)
        s0, s1, s2, s3 = w.strides  # wt[i, j, group] = w_ij^T [C/groups, O/groups]
        wt = xp.lib.stride_tricks.as_strided(w, shape=(kh, kw, groups, cg, og),
                                             strides=(s2, s3, og * s0, s1, s0))
        cols = xp.ascontiguousarray(wt @ gy.reshape(groups, og, span))  # [KH, KW, C, span]
        z = cols.itemsize
        view = xp.lib.stride_tricks.as_strided(  # as [N, C, KH, KW, OH, OW]
            cols, shape=(n, c, kh, kw) + tuple(g.shape[2:]),
            strides=(hp * wp * z, span * z, kw * c * span * z, c * span * z, wp * z, z))
        return col2im(xp, view, input_shape, (1, 1), padding, dilation, out=out)

    def workspace(self, g: Aval, w: Aval, input_shape, stride=(1, 1), padding=(0, 0),
                  dilation=(1, 1), groups=1):
        if _pair(stride, "stride", 1) != (1, 1):
            return ()  # the column path (forward, then a copy)
        n, c, h, wd = input_shape
        (ph, pw), o, cg = _pair(padding, "padding", 0), w.shape[0], w.shape[1]
        hp, wp = h + 2 * ph, wd + 2 * pw
        return (Aval((o, n, hp, wp), g.dtype), Aval((c, n, hp, wp), g.dtype),
                Aval((groups, cg, n * hp * wp), g.dtype))

    def forward_into(self, xp, out, g, w, input_shape, stride=(1, 1), padding=(0, 0),
                     dilation=(1, 1), groups=1, work=None):
        if is_device(xp) and out.flags.c_contiguous:  # forward's GEMM and gather, into out
            stride, padding, dilation = _conv_attrs(stride, padding, dilation)
            if stride == (1, 1):
                return self._stride_one_batched(xp, g, w, tuple(input_shape), padding,
                                                dilation, groups, out=out)
            return col2im(xp, self._columns(g, w, groups), tuple(input_shape), stride, padding,
                          dilation, out=out)
        if not work:
            return Op.forward_into(self, xp, out, g, w, input_shape, stride, padding, dilation,
                                   groups)
        # `_stride_one` with its three arrays in the arena. The image after the last is not
        # needed here: an offset's product is zero past span - offset (g is zero-padded
        # there), so each add stops at the end of the buffer.
        gy, dx, prod = work
        n, c, h, wd = input_shape
        (ph, pw), (dh, dw) = _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
        o, cg, kh, kw = w.shape
        wp = wd + 2 * pw
        span = prod.shape[2]
        gy.fill(0)
        gy[:, :, :g.shape[2], :g.shape[3]] = g.transpose(1, 0, 2, 3)
        gflat = gy.reshape(groups, o // groups, span)
        wt = w.reshape(groups, o // groups, cg, kh, kw)
        dx.fill(0)
        flat = dx.reshape(groups, cg, span)
        for i in range(kh):
            for j in range(kw):
                at = i * dh * wp + j * dw
                xp.matmul(wt[:, :, :, i, j].swapaxes(-1, -2), gflat, out=prod)
                xp.add(flat[..., at:], prod[..., :span - at], out=flat[..., at:])
        xp.copyto(out, dx[:, :, ph:ph + h, pw:pw + wd].transpose(1, 0, 2, 3))
        return out

    def vjp(self, gx, out, g, w, input_shape, **attrs):
        return (gx.apply("conv2d", w, **attrs),
                gx.apply("conv2d_grad_weight", g, weight_shape=w.shape, **attrs))

    def samples(self):
        for x, w, attrs in CONV_CASES:
            y = _conv_shape(x, w, **{**CONV_DEFAULTS, **attrs})
            yield Sample(shapes=(y, w), attrs={"input_shape": x, **attrs})


@register
class Conv2dGradWeight(Op):
    """dw[o, c, i, j] = sum_{n,p,q} g[n,o,p,q] xpad[n, c, p*sh + i*dh, q*sw + j*dw] over o's group;
    bilinear: d/dx = conv2d_grad_input(g, v), d/dg = conv2d(x, v)"""
    name = "conv2d_grad_weight"
    arity = 2

    def infer(self, x: Aval, g: Aval, weight_shape, stride=(1, 1), padding=(0, 0),
              dilation=(1, 1), groups=1) -> Aval:
        require_float(x, "x")
        dtype = same_dtype(x, g)
        expected = _conv_shape(x.shape, tuple(weight_shape), stride, padding, dilation, groups)
        if g.shape != expected:
            fail(f"g {list(g.shape)} is not the conv2d output shape {list(expected)} of x "
                 f"{list(x.shape)} and w {list(weight_shape)}")
        return Aval(tuple(weight_shape), dtype)

    def forward(self, xp, x, g, weight_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                groups=1):
        n, o, oh, ow = g.shape
        _, cg, kh, kw = weight_shape
        stride, padding, dilation = _conv_attrs(stride, padding, dilation)
        if stride == (1, 1):
            one = self._stride_one_batched if is_device(xp) else self._stride_one
            return one(xp, x, g, tuple(weight_shape), padding, dilation, groups)
        k = cg * kh * kw
        view = _windows(xp, x, (kh, kw), stride, padding, dilation, (oh, ow))
        cols = view.reshape(n, groups, k, oh * ow)
        gw = g.reshape(n, groups, o // groups, oh * ow) @ cols.swapaxes(-1, -2)
        return gw.sum(axis=0).reshape(tuple(weight_shape))  # [groups, O/groups, K] summed over N

    @staticmethod
    def _stride_one(xp, x, g, weight_shape, padding, dilation, groups):
        # one image per matmul: with all images in one row the positions become the inner
        # dimension of a [O, C] result, which OpenBLAS splits poorly between threads
        o, cg, kh, kw = weight_shape
        dh, dw = dilation
        xf, gy, row, span = _flat_operands(xp, x, g, weight_shape, padding, groups)
        gw = xp.empty((groups, o // groups, cg, kh, kw), dtype=g.dtype)
        for i in range(kh):
            for j in range(kw):
                at = i * dh * row + j * dw
                gw[:, :, :, i, j] = (gy @ xf[..., at:at + span].swapaxes(-1, -2)).sum(axis=0)
        return gw.reshape(weight_shape)

    @staticmethod
    def _stride_one_batched(xp, x, g, weight_shape, padding, dilation, groups):
        # `_stride_one` for device arrays, without its loop: the offsets' slices of the flat
        # input as one strided view [N, groups, KH, KW, span, C/groups] (the slices' own
        # layout), so one matmul runs the loop's GEMMs as its batch and gives the same sums
        n = x.shape[0]
        o, cg, kh, kw = weight_shape
        dh, dw = dilation
        xf, gy, row, span = _flat_operands(xp, x, g, weight_shape, padding, groups)
        sn, sg, sc, st = xf.strides
        slices = xp.lib.stride_tricks.as_strided(
            xf, shape=(n, groups, kh, kw, span, cg),
            strides=(sn, sg, dh * row * st, dw * st, st, sc))
        gw = (gy[:, :, None, None] @ slices).sum(axis=0)  # [groups, KH, KW, O/groups, C/groups]
        return xp.ascontiguousarray(gw.transpose(0, 3, 4, 1, 2)).reshape(weight_shape)

    def workspace(self, x: Aval, g: Aval, weight_shape, stride=(1, 1), padding=(0, 0),
                  dilation=(1, 1), groups=1):
        n, c = x.shape[:2]
        _, o, oh, ow = g.shape
        kh, kw = weight_shape[2:]
        k = (c // groups) * kh * kw
        work = (Aval((c, kh, kw, n, oh, ow), x.dtype), Aval((o, n, oh, ow), x.dtype),
                Aval((groups, k, o // groups), x.dtype))
        ph, pw = _pair(padding, "padding", 0)
        if ph or pw:
            work += (Aval((n, c, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), x.dtype),)
        return work

    def forward_into(self, xp, out, x, g, weight_shape, stride=(1, 1), padding=(0, 0),
                     dilation=(1, 1), groups=1, work=None):
        # Large batches: the columns laid out [C*KH*KW, N*OH*OW] and one GEMM per group,
        # dw^T = cols @ g^T, whose long inner dimension (every position of every image)
        # BLAS splits across threads. Measured for the benchmark CNN's second conv: 6.2-6.5
        # ms at 1 thread and 4.8 at 2, against 6.4-6.7 and 6.7-6.9 for the per-image
        # products of `forward`, which a second thread does not help.
        cols, gt, dwt = work[:3]
        n, o, oh, ow = g.shape
        stride, padding, dilation = _conv_attrs(stride, padding, dilation)
        if padding != (0, 0):
            x = _pad_into(work[3], x, padding)
        (sh, sw), (dh, dw) = stride, dilation
        sn, sc, s_h, s_w = x.strides
        view = xp.lib.stride_tricks.as_strided(
            x, shape=cols.shape, strides=(sc, s_h * dh, s_w * dw, sn, s_h * sh, s_w * sw))
        xp.copyto(cols, view)
        xp.copyto(gt, g.transpose(1, 0, 2, 3))
        xp.matmul(cols.reshape(groups, dwt.shape[1], -1),
                  gt.reshape(groups, o // groups, -1).swapaxes(-1, -2), out=dwt)
        xp.copyto(out.reshape(groups, o // groups, dwt.shape[1]), dwt.swapaxes(-1, -2))
        return out

    def vjp(self, gw, out, x, g, weight_shape, **attrs):
        return (g.apply("conv2d_grad_input", gw, input_shape=x.shape, **attrs),
                x.apply("conv2d", gw, **attrs))

    def samples(self):
        for x, w, attrs in CONV_CASES:
            y = _conv_shape(x, w, **{**CONV_DEFAULTS, **attrs})
            yield Sample(shapes=(x, y), attrs={"weight_shape": w, **attrs})


# ---- the column matrix as a value of its own -------------------------------------------------
# A training graph lays out the same columns of x twice, for conv2d and for its weight
# gradient. The compiler's conv_columns pass makes them one `im2col` node that both GEMMs
# read (nnctl/compile/conv_columns.py); `col2im` is its adjoint.

def _column_geometry(input_shape, kernel, stride, padding, dilation):
    """(kernel, stride, padding, dilation) as pairs and (OH, OW), checked."""
    kernel = _pair(kernel, "kernel", 1)
    stride, padding, dilation = _conv_attrs(stride, padding, dilation)
    n, c = input_shape[:2]
    oh_ow = _conv_shape(tuple(input_shape), (1, c) + kernel, stride, padding, dilation, 1)[2:]
    return kernel, stride, padding, dilation, oh_ow


def _column_view(xp, xpad, kernel, stride, dilation, out_hw):
    """v[c, i, j, n, p, q] = xpad[n, c, p*sh + i*dh, q*sw + j*dw]: [C, KH, KW, N, OH, OW],
    the order in which the columns are one [C*KH*KW, N*OH*OW] matrix (read-only: aliases)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    sn, sc, s_h, s_w = xpad.strides
    return xp.lib.stride_tricks.as_strided(
        xpad, shape=(xpad.shape[1], kh, kw, xpad.shape[0]) + tuple(out_hw),
        strides=(sc, s_h * dh, s_w * dw, sn, s_h * sh, s_w * sw))


@register
class Im2col(Op):
    """cols[(c, i, j), (n, p, q)] = xpad[n, c, p*sh + i*dh, q*sw + j*dw]: the convolution's
    columns as one [C*KH*KW, N*OH*OW] matrix, so that conv2d is one GEMM w @ cols and its
    weight gradient one GEMM g @ cols^T;  linear: dx = col2im(g)"""
    name = "im2col"
    arity = 1

    def infer(self, x: Aval, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> Aval:
        require_float(x, "x")
        if x.ndim != 4:
            fail(f"im2col needs x as [N, C, H, W], got {list(x.shape)}")
        (kh, kw), _, _, _, (oh, ow) = _column_geometry(x.shape, kernel, stride, padding,
                                                       dilation)
        n, c = x.shape[:2]
        return Aval((c * kh * kw, n * oh * ow), x.dtype)

    def forward(self, xp, x, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
        kernel, stride, (ph, pw), dilation, out_hw = _column_geometry(
            x.shape, kernel, stride, padding, dilation)
        xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        view = _column_view(xp, xpad, kernel, stride, dilation, out_hw)
        return xp.ascontiguousarray(view).reshape(view.shape[0] * view.shape[1] * view.shape[2],
                                                  -1)

    def workspace(self, x: Aval, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
        ph, pw = _pair(padding, "padding", 0)
        if not (ph or pw):
            return ()
        n, c, h, w = x.shape
        return (Aval((n, c, h + 2 * ph, w + 2 * pw), x.dtype),)

    def forward_into(self, xp, out, x, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                     work=None):
        kernel, stride, padding, dilation, out_hw = _column_geometry(
            x.shape, kernel, stride, padding, dilation)
        xpad = _pad_into(work[0], x, padding) if work else x
        view = _column_view(xp, xpad, kernel, stride, dilation, out_hw)
        xp.copyto(out.reshape(view.shape), view)
        return out

    def vjp(self, g, out, x, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
        return (g.apply("col2im", input_shape=x.shape, kernel=kernel, stride=stride,
                        padding=padding, dilation=dilation),)

    def samples(self):
        for x, w, attrs in CONV_CASES:
            if attrs.get("groups", 1) == 1:
                yield Sample(shapes=(x,), attrs={"kernel": w[2:], **attrs})


@register
class Col2im(Op):
    """dx[n, c, h, w] = the sum of the column entries im2col took from xpad[n, c, h+ph, w+pw]:
    the adjoint of im2col;  linear: dcols = im2col(g)"""
    name = "col2im"
    arity = 1

    def infer(self, cols: Aval, input_shape, kernel, stride=(1, 1), padding=(0, 0),
              dilation=(1, 1)) -> Aval:
        require_float(cols, "cols")
        expected = _IM2COL.infer(Aval(tuple(input_shape), cols.dtype), kernel, stride, padding,
                                 dilation)
        if cols.shape != expected.shape:
            fail(f"col2im: cols {list(cols.shape)} are not the columns {list(expected.shape)} "
                 f"of an input {list(input_shape)}")
        return Aval(tuple(input_shape), cols.dtype)

    def forward(self, xp, cols, input_shape, kernel, stride=(1, 1), padding=(0, 0),
                dilation=(1, 1)):
        n, c, h, w = input_shape
        (kh, kw), stride, (ph, pw), dilation, (oh, ow) = _column_geometry(
            input_shape, kernel, stride, padding, dilation)
        blocks = cols.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)
        return xp.ascontiguousarray(
            _scatter_windows(xp, blocks, input_shape, stride, (ph, pw), dilation))

    def workspace(self, cols: Aval, input_shape, kernel, stride=(1, 1), padding=(0, 0),
                  dilation=(1, 1)):
        # the sums in [C, N, Hp, Wp] (the columns' own order, so each add is a contiguous run
        # per row), then one transposed copy
        n, c, h, w = input_shape
        ph, pw = _pair(padding, "padding", 0)
        return (Aval((c, n, h + 2 * ph, w + 2 * pw), cols.dtype),)

    def forward_into(self, xp, out, cols, input_shape, kernel, stride=(1, 1), padding=(0, 0),
                     dilation=(1, 1), work=None):
        n, c, h, w = out.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = _column_geometry(
            out.shape, kernel, stride, padding, dilation)
        blocks = cols.reshape(c, kh, kw, n, oh, ow)
        if is_device(xp) and out.flags.c_contiguous:  # the gather reads the blocks' strides
            return col2im(xp, blocks.transpose(3, 0, 1, 2, 4, 5), tuple(out.shape),
                          (sh, sw), (ph, pw), (dh, dw), out=out)
        if not work:
            return Op.forward_into(self, xp, out, cols, input_shape, kernel, stride, padding,
                                   dilation)
        dx = work[0]
        dx.fill(0)
        for i in range(kh):  # the adds of _scatter_windows, in the same order
            for j in range(kw):
                v = dx[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                       j * dw:j * dw + sw * (ow - 1) + 1:sw]
                xp.add(v, blocks[:, i, j], out=v)
        xp.copyto(out, dx[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))
        return out

    def vjp(self, g, out, cols, input_shape, kernel, stride=(1, 1), padding=(0, 0),
            dilation=(1, 1)):
        return (g.apply("im2col", kernel=kernel, stride=stride, padding=padding,
                        dilation=dilation),)

    def samples(self):
        for x, w, attrs in CONV_CASES:
            if attrs.get("groups", 1) == 1:
                cols = Im2col().infer(Aval(x, "float64"), w[2:], **attrs)
                yield Sample(shapes=(cols.shape,),
                             attrs={"input_shape": x, "kernel": w[2:], **attrs})


_IM2COL = Im2col()  # col2im checks its input against the columns im2col would give


CONV_DEFAULTS = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}

# (x shape, w shape, attrs): small, since gradcheck perturbs every element
CONV_CASES = (
    ((2, 3, 5, 5), (4, 3, 3, 3), {}),
    ((2, 2, 6, 6), (3, 2, 3, 3), {"stride": (2, 2), "padding": (1, 1)}),
    ((1, 2, 6, 5), (2, 2, 2, 3), {"stride": (1, 2), "padding": (1, 0), "dilation": (2, 1)}),
    ((2, 4, 5, 5), (6, 2, 3, 3), {"padding": (1, 1), "groups": 2}),
    ((2, 3, 5, 5), (3, 1, 3, 3), {"stride": (2, 2), "padding": (1, 1), "groups": 3}),
    ((2, 3, 4, 4), (2, 3, 1, 1), {}),
    ((1, 2, 4, 3), (2, 2, 2, 2), {"padding": (2, 1), "dilation": (1, 2)}),  # windows of padding
)
