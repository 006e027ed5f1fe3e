"""``spatial_conv2d``: ``conv2d`` of one image whose rows are split across the devices of a 1-D mesh.

Each device holds a block of ``hs`` input rows and computes an equal block of output rows with
:func:`jaxconv.conv2d`. The rows it needs beyond its own block — a halo of about ``(KH - 1) * dh`` rows,
more with stride or asymmetric padding — come from its neighbours by ``lax.ppermute`` inside
``jax.shard_map``. Padding is resolved row by row at trace time: every padded row the device needs is mapped
to the source row it copies (``"reflect"``, ``"replicate"``, ``"circular"``) or to zero (``"zeros"``), so the
neighbours' rows, the device's own rows and the padding all come out of one gather from the local buffer.
Columns are whole on every device and are padded by ``conv2d`` itself.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxconv.conv._conv import canonicalize, conv2d, options_of
from jaxconv.conv._spec import Layout, PaddingMode, Strategy


@dataclasses.dataclass(frozen=True)
class _RowPlan:
    """How the padded rows reach each device; plain Python, computed at trace time.

    Attributes:
      devices: ``D``, the number of devices on the mesh axis.
      rows: ``H``, the image's rows.
      block: ``hs = ceil(H / D)``, input rows per device (the image is zero-filled at the bottom to ``D * hs``).
      out_block: ``ceil(Ho / D)``, output rows per device (the surplus is cropped after the ``shard_map``).
      above: halo rows each device receives from the devices before it.
      below: halo rows each device receives from the devices after it.
      table: ``[D, L]`` index into the device's buffer ``[above + hs + below]`` of each of the ``L`` padded
        rows its output block reads; ``above + hs + below`` (out of range) for a zero row.
    """

    devices: int
    rows: int
    block: int
    out_block: int
    above: int
    below: int
    table: np.ndarray

    @property
    def buffer(self) -> int:
        return self.above + self.block + self.below


def _source_row(u: int, rows: int, mode: str) -> int | None:
    """The row of the image that padded row ``u`` (in image coordinates, possibly outside ``[0, H)``) copies."""
    if 0 <= u < rows:
        return u
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(u, 0), rows - 1)
    if mode == "circular":
        return u % rows
    # reflect (PyTorch's, without the edge): pad < rows is checked by make_spec, so one bounce suffices.
    return -u if u < 0 else 2 * (rows - 1) - u


def _row_plan(rows: int, out_rows: int, devices: int, top: int, stride: int, extent: int, mode: str) -> _RowPlan:
    """Plans which padded rows each device reads and where they come from (see :class:`_RowPlan`)."""
    block = -(-rows // devices)
    total = block * devices
    out_block = -(-out_rows // devices)
    length = (out_block - 1) * stride + extent
    offsets: list[list[int | None]] = []
    for d in range(devices):
        valid = min(max(out_rows - d * out_block, 0), out_block)
        needed = (valid - 1) * stride + extent if valid else 0
        row_offsets: list[int | None] = []
        for j in range(length):
            source = _source_row(d * out_block * stride - top + j, rows, mode) if j < needed else None
            if source is None:
                row_offsets.append(None)
                continue
            # The cyclic exchange below wraps at D * hs, so a source row can be reached from either side.
            candidates = (source - d * block + k * total for k in (-1, 0, 1))
            row_offsets.append(min(candidates, key=lambda o: (max(-o, o - block + 1, 0), abs(o))))
        offsets.append(row_offsets)
    reached = [o for row in offsets for o in row if o is not None]
    above = max([0, *(-o for o in reached)])
    below = max([0, *(o - block + 1 for o in reached)])
    zero = above + block + below
    table = np.array([[zero if o is None else o + above for o in row] for row in offsets], dtype=np.int32)
    return _RowPlan(devices, rows, block, out_block, above, below, table.reshape(devices, length))


def _exchange(x: jax.Array, axis: str, plan: _RowPlan) -> jax.Array:
    """Each device's rows ``[d*hs - above, (d+1)*hs + below)`` (cyclically), by ``ppermute`` from its neighbours.

    Args:
      x: the local block ``[N, hs, W, C]``.

    Returns:
      ``[N, above + hs + below, W, C]``.
    """
    d, hs = plan.devices, plan.block
    parts = []
    for k in range(math.ceil(plan.above / hs), 0, -1):  # from device i - k: the tail of its block
        take = min(hs, plan.above - (k - 1) * hs)
        parts.append(lax.ppermute(x[:, hs - take :], axis, [(i, (i + k) % d) for i in range(d)]))
    parts.append(x)
    for k in range(1, math.ceil(plan.below / hs) + 1):  # from device i + k: the head of its block
        take = min(hs, plan.below - (k - 1) * hs)
        parts.append(lax.ppermute(x[:, :take], axis, [(i, (i - k) % d) for i in range(d)]))
    return jnp.concatenate(parts, axis=1) if len(parts) > 1 else x


@dataclasses.dataclass(frozen=True)
class _Options:
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    groups: int
    padding_mode: str
    strategy: str
    precision: Any


def _sharded_nhwc(x: jax.Array, kernel: jax.Array, bias: jax.Array | None, mesh: Mesh, opts: _Options) -> jax.Array:
    """The sharded convolution of a canonical NHWC ``x`` with an HWIO ``kernel``; traced once per shape."""
    (axis,) = mesh.axis_names
    explicit = not jax.sharding.get_abstract_mesh().empty  # under jax.set_mesh: shard_map must use that mesh
    if not explicit:
        # The mesh's devices with the axis in Auto mode: the output's type then carries no sharding, so cropping
        # rows that do not divide evenly, and whatever the caller does next, needs no explicit resharding.
        mesh = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,))
    n, h, w, c = x.shape
    kh = kernel.shape[0]
    (top, bottom), (left, right) = opts.padding
    sh, dh = opts.stride[0], opts.dilation[0]
    extent = (kh - 1) * dh + 1
    out_rows = (h + top + bottom - extent) // sh + 1
    plan = _row_plan(h, out_rows, mesh.size, top, sh, extent, opts.padding_mode)
    if plan.block * plan.devices != h:
        x = jnp.pad(x, ((0, 0), (0, plan.block * plan.devices - h), (0, 0), (0, 0)))
    rows_sharded = NamedSharding(mesh, P(None, axis))
    # reshard's transpose brings the cotangent back to x's own (uneven-capable) type before the pad is undone.
    x = jax.sharding.reshard(x, rows_sharded) if explicit else jax.device_put(x, rows_sharded)
    table = jnp.asarray(plan.table)

    def local(xb: jax.Array, k: jax.Array, b: jax.Array | None) -> jax.Array:
        buffer = _exchange(xb, axis, plan)
        rows = jnp.take(buffer, table[lax.axis_index(axis)], axis=1, mode="fill", fill_value=0)
        return conv2d(
            rows,
            k,
            b,
            stride=opts.stride,
            padding=((0, 0), (left, right)),
            dilation=opts.dilation,
            groups=opts.groups,
            padding_mode=cast(PaddingMode, opts.padding_mode),
            strategy=cast(Strategy, opts.strategy),
            precision=opts.precision,
        )

    out = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(None, axis), P(), P()),
        out_specs=P(None, axis),
    )(x, kernel, bias)
    if explicit and out_rows != out.shape[1] and mesh.axis_types[0] == AxisType.Explicit:
        out = jax.sharding.reshard(out, P())  # an uneven row split cannot be typed: replicate before cropping
    return out[:, :out_rows]


_sharded_nhwc_jit = jax.jit(_sharded_nhwc, static_argnames=("mesh", "opts"))


def spatial_conv2d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    mesh: Mesh,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] = "VALID",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    layout: Layout = "NHWC",
    strategy: Strategy = "auto",
    precision: Any = None,
) -> jax.Array:
    """:func:`jaxconv.conv2d` of an image whose rows are split across the devices of a 1-D ``mesh``.

    The image's rows are sharded over the mesh's one axis (whatever its name) with ``jax.shard_map``; every
    device convolves its block with ``conv2d`` after receiving a halo of neighbouring rows by ``lax.ppermute``
    (``(KH - 1) * dh`` rows in all for stride 1; with ``"circular"`` padding the first and last devices
    exchange theirs, so the halo wraps around). The result equals ``conv2d(x, kernel, bias, ...)`` with the
    same options — every padding form and mode, stride, dilation, groups, layout and rank — to float
    rounding, and is differentiable. ``H`` divisible by the number of devices avoids a copy of the input
    (otherwise it is zero-filled at the bottom before sharding); a halo larger than a device's block is
    fetched from further devices, at the cost of more communication. The mesh's axis may be ``Auto`` or
    ``Explicit`` (``jax.make_mesh``'s default), the call eager, under ``jit`` or under ``jax.set_mesh``; there,
    with ``Explicit`` axes, an output whose rows do not divide over the devices comes back replicated.

    Args:
      x: as for ``conv2d``: ``[N, H, W, C]`` / ``[H, W, C]`` (NHWC), ``[N, C, H, W]`` / ``[C, H, W]`` (NCHW)
        or a plain ``[H, W]`` image. ``H`` is split across the devices.
      kernel: as for ``conv2d``: ``[KH, KW, C // groups, O]`` (NHWC), ``[O, C // groups, KH, KW]`` (NCHW),
        ``[KH, KW]`` for a plain image. Replicated on every device.
      bias: ``[O]`` (``[]`` or ``[1]`` for a plain image) or ``None``.
      mesh: a ``jax.sharding.Mesh`` with exactly one axis; its devices hold the image's rows in order.
      stride: as for ``conv2d``.
      padding: as for ``conv2d``.
      dilation: as for ``conv2d``.
      groups: as for ``conv2d``.
      padding_mode: as for ``conv2d``.
      layout: as for ``conv2d``.
      strategy: the ``conv2d`` strategy each device runs on its block.
      precision: as for ``conv2d``.

    Returns:
      What ``conv2d`` returns: ``[N, Ho, Wo, O]`` / ``[Ho, Wo, O]`` (NHWC), ``[N, O, Ho, Wo]`` / ``[O, Ho, Wo]``
      (NCHW) or ``[Ho, Wo]``, its rows sharded over the mesh.

    Raises:
      ValueError: ``mesh`` is not 1-D, or any argument ``conv2d`` rejects (the same message).
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``, or any argument of a type ``conv2d`` rejects.

    Examples:
      Circular padding wraps around (``out[0, 0] = x[3, 0] + x[0, 3]``); on a one-device mesh here, on
      eight devices the call is the same:

      >>> import jax, jax.numpy as jnp
      >>> import jaxconv
      >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("rows",))
      >>> image = jnp.arange(16.0).reshape(4, 4)
      >>> kernel = jnp.array([[0.0, 1.0], [1.0, 0.0]])
      >>> out = jaxconv.spatial_conv2d(image, kernel, mesh=mesh, padding=1, padding_mode="circular")
      >>> out
      Array([[15., 13., 15., 17., 15.],
             [ 7.,  5.,  7.,  9.,  7.],
             [15., 13., 15., 17., 15.],
             [23., 21., 23., 25., 23.],
             [15., 13., 15., 17., 15.]], dtype=float32)
      >>> bool(jnp.allclose(out, jaxconv.conv2d(image, kernel, padding=1, padding_mode="circular")))
      True
    """
    options = {name: value for name, value in options_of(locals()).items() if name != "mesh"}
    if not isinstance(mesh, Mesh):
        raise TypeError(f"spatial_conv2d: `mesh` must be a jax.sharding.Mesh; got {type(mesh).__name__}")
    if len(mesh.axis_names) != 1:
        raise ValueError(
            f"spatial_conv2d: `mesh` must have exactly one axis (the image's rows are split over it); "
            f"got axes {tuple(mesh.axis_names)} of shape {tuple(mesh.devices.shape)}"
        )
    canon = canonicalize(x, kernel, bias, **options)  # conv2d's own checks and messages
    spec = canon.spec
    (sh, sw), (dh, dw), (rows, cols) = spec.stride, spec.dilation, spec.padding  # 2-D: canonicalize's default
    opts = _Options((sh, sw), (dh, dw), (rows, cols), spec.groups, spec.padding_mode, spec.strategy, precision)
    return canon.restore(_sharded_nhwc_jit(canon.x, canon.kernel, canon.bias, mesh, opts))


__all__ = ["spatial_conv2d"]
