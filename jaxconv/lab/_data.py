"""The world a kernel is tried on: images with a small pattern planted at random places.

A :class:`PlantedPatternTask` is a frozen, hashable description (so ``jit`` can close over it or take it
as a static argument); :meth:`PlantedPatternTask.sample` turns a PRNG key into a batch on the device.
Everything is pure: the same key gives the same batch, under ``jit`` or not.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._checks import check_number, fail, is_int

Pattern = tuple[tuple[float, ...], ...]

PATTERNS: Mapping[str, Pattern] = {
    # The seed document's example: "part of an edge or corner".
    "seed": ((1, 1, 0), (1, 0, 0)),
    "corner": ((1, 1, 1), (1, 0, 0), (1, 0, 0)),
    "hedge": ((1, 1, 1), (0, 0, 0)),
    "vedge": ((1, 0), (1, 0), (1, 0)),
    "cross": ((0, 1, 0), (1, 1, 1), (0, 1, 0)),
    "diagonal": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "checker": ((1, 0, 1), (0, 1, 0), (1, 0, 1)),
    "tee": ((1, 1, 1), (0, 1, 0), (0, 1, 0)),
    "ring": ((1, 1, 1), (1, 0, 1), (1, 1, 1)),
}
"""Named binary patterns (rows of 0/1); ``"seed"`` is ``[[1,1,0],[1,0,0]]``."""

Background = Literal["binary", "gaussian", "photo"]
BACKGROUNDS: tuple[str, ...] = get_args(Background)
PHOTO_ONLY = {"photos": None, "contrast": (1.0, 1.0), "brightness": (0.0, 0.0)}
"""The fields only a photo background uses, with the values every other background keeps (and leaves out of
:meth:`PlantedPatternTask.to_dict`)."""


class Photos:
    """Grey photographs ``[N, PH, PW]`` float32 as a hashable value: equal when shapes and pixels are equal.

    A :class:`PlantedPatternTask` holds its photographs as one (its ``photos`` field), so the task stays a hashable
    static argument; the pixels reach jitted code as :attr:`TaskValues.photos`, an array argument. A placeholder
    (``pixels=None``, what :meth:`PlantedPatternTask.skeleton` holds) keeps only the shape.

    Attributes:
      pixels: ``[N, PH, PW]`` float32 (read-only), or ``None`` for a placeholder.
      shape: ``(N, PH, PW)``.
      digest: the SHA-256 of the pixels (hex), or ``"placeholder"``.
    """

    __slots__ = ("pixels", "shape", "digest")

    def __init__(self, pixels: np.ndarray | None, shape: tuple[int, int, int] | None = None) -> None:
        if pixels is None:
            self.pixels, self.shape, self.digest = None, tuple(shape or ()), "placeholder"
        else:
            self.pixels = np.array(pixels, dtype=np.float32)
            self.pixels.flags.writeable = False
            self.shape = self.pixels.shape
            self.digest = hashlib.sha256(self.pixels.tobytes()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Photos) and (self.shape, self.digest) == (other.shape, other.digest)

    def __hash__(self) -> int:
        return hash((self.shape, self.digest))

    def __repr__(self) -> str:
        return f"Photos(shape={self.shape}, sha256={self.digest[:12]})"


class Sample(NamedTuple):
    """A batch drawn from a :class:`PlantedPatternTask`.

    Attributes:
      images: ``[B, H, W, 1]`` float32.
      targets: ``[B, Ho, Wo]`` float32 for one pattern, ``[B, Ho, Wo, K]`` for K > 1 (``Ho = H - PH + 1``,
        ``Wo = W - PW + 1``, ``PH x PW`` the common window): 1 where a copy of the pattern (``k``) has its
        top-left corner (binary: every exact occurrence, planted or accidental; gaussian, photo: the planted ones).
      positions: ``[B, K * max_instances, 2]`` int32, the planted top-left corners ``(row, col)``, slot ``s``
        holding a copy of pattern ``s // max_instances``; unused slots are ``-1``.
    """

    images: jax.Array
    targets: jax.Array
    positions: jax.Array


class TaskValues(NamedTuple):
    """A task's numbers, as arrays that a jitted function takes as arguments (so that tasks which differ only
    in them share one compile; see :meth:`PlantedPatternTask.skeleton`).

    Attributes:
      pattern: ``[PH, PW]`` float32 for one pattern; ``[K, PH, PW]`` (:attr:`PlantedPatternTask.templates`)
        for K > 1.
      density: ``[]`` float32.
      noise_std: ``[]`` float32.
      amplitude: ``[]`` float32.
      photos: ``[N, PH, PW]`` float32, the photographs of a photo background (``None`` for the others).
    """

    pattern: Any
    density: Any
    noise_std: Any
    amplitude: Any
    photos: Any = None


def _fail(argument: str, allowed: str, given: Any, error: type[Exception] = ValueError) -> Exception:
    return fail("PlantedPatternTask", argument, allowed, given, error)


def _as_pattern(pattern: Any, argument: str = "pattern") -> Pattern:
    if isinstance(pattern, str):
        if pattern not in PATTERNS:
            raise _fail(argument, f"a 2-D array or one of the names {tuple(PATTERNS)}", pattern)
        pattern = PATTERNS[pattern]
    try:
        array = np.asarray(pattern, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise _fail(argument, "a 2-D array of numbers or a name from PATTERNS", pattern, TypeError) from err
    if array.ndim != 2 or array.size == 0:
        raise _fail(argument, "a non-empty 2-D array", f"shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise _fail(argument, "finite", array.tolist())
    return tuple(tuple(float(v) for v in row) for row in array)


def _as_patterns(pattern: Any, patterns: Any) -> tuple[Pattern, ...]:
    """The task's patterns from its two fields, exactly one of which may be given (neither: ``"seed"``)."""
    if pattern is not None and patterns is not None:
        raise _fail("patterns", "None when `pattern` is given (give exactly one of them)", patterns)
    if patterns is None:
        return (_as_pattern("seed" if pattern is None else pattern),)
    if isinstance(patterns, (str, np.ndarray)) or not isinstance(patterns, (tuple, list)):
        raise _fail("patterns", "a tuple of K >= 1 patterns (names or 2-D arrays)", patterns, TypeError)
    if not patterns:
        raise _fail("patterns", "a tuple of K >= 1 patterns (names or 2-D arrays)", patterns)
    return tuple(_as_pattern(p, "patterns") for p in patterns)


def _as_pair(name: str, value: Any, low: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        raise _fail(name, f"an int >= {low} or a pair of ints >= {low}", value, TypeError)
    if min(value) < low:
        raise _fail(name, f"an int >= {low} or a pair of ints >= {low}", value)
    return int(value[0]), int(value[1])


def _as_columns(value: Any, wo: int) -> tuple[int, int]:
    allowed = f"None or a pair (lo, hi) of ints with 0 <= lo < hi <= {wo} (the output columns)"
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value)):
        raise _fail("plant_columns", allowed, value, TypeError)
    lo, hi = int(value[0]), int(value[1])
    if not 0 <= lo < hi <= wo:
        raise _fail("plant_columns", allowed, value)
    return lo, hi


def _as_float(name: str, value: Any, allowed: str, ok: Any) -> float:
    return check_number("PlantedPatternTask", name, value, allowed=allowed, ok=ok)


def _check_shape(argument: str, pattern: Pattern, background: str) -> None:
    if background == "binary" and not all(v in (0.0, 1.0) for row in pattern for v in row):
        raise _fail(argument, "made of 0s and 1s on a binary background", pattern)
    constant = all(v == pattern[0][0] for row in pattern for v in row)
    if constant and not (background == "binary" and pattern[0][0] == 1.0):
        raise _fail(
            argument,
            "non-constant, or all 1s on a binary background (any other constant pattern has no shape to detect)",
            [list(row) for row in pattern],
        )


@dataclasses.dataclass(frozen=True)
class PlantedPatternTask:
    """Images with ``instances`` non-overlapping copies of each of K >= 1 patterns planted at random places.

    Give ``pattern`` (one pattern, K = 1) or ``patterns`` (K of them), not both; with neither, the pattern is
    ``"seed"``. The K patterns share one window, the *common* shape ``(PH, PW) = (max PH_k, max PW_k)``: a smaller
    pattern sits at its top-left, and the rest of the window (its padding) is not part of it — a binary
    background keeps its own pixels there, and an exact occurrence of the pattern is decided on the pattern's own
    pixels only. Targets, logits and the kernel live on that common window (``Ho = H - PH + 1``), so an occurrence
    of a smaller pattern whose window would cross the image's bottom or right edge is not a target.

    Args:
      pattern: one pattern: a 2-D array-like ``[PH, PW]`` or a name from :data:`PATTERNS`; stored as a tuple of
        float rows. With a binary background its values must be 0 or 1, at least one of them 1 (all 1s is a
        solid block, which has a place to be found); otherwise it must be non-constant.
      image_shape: ``(H, W)`` (or one int), at least the (common) pattern shape.
      instances: ``(min, max)`` planted copies *of each pattern* per image (or one int), ``0 <= min <= max``; the
        count is uniform in that range, drawn per pattern. All ``K * max`` copies must fit without overlap wherever
        the earlier ones landed: ``(K * max - 1) * (2PH - 1) * (2PW - 1) < Ho * Wo``.
      background: ``"binary"`` (each pixel is 1 with probability ``density``, the pattern's pixels pasted over it),
        ``"gaussian"`` (white noise of std ``noise_std`` with ``amplitude * pattern`` added at each copy) or
        ``"photo"``: a random ``H x W`` crop ``c`` of one of ``photos`` (photograph and place uniform), a gain
        ``g`` and an offset ``b`` drawn uniformly from ``contrast`` and ``brightness``, and white noise ``n`` of
        std ``noise_std``: the image is ``g * (c + amplitude * copies) + b + n`` (the pattern is part of the
        scene, so it changes contrast with it).
      density: binary background's probability of a 1, in ``[0, 1]``.
      noise_std: gaussian (and photo) background's noise std, ``> 0``.
      amplitude: gaussian (and photo) background's pattern amplitude, ``> 0``.
      patterns: ``K >= 1`` patterns, each as ``pattern``, in a tuple (stored unpadded, each a tuple of float
        rows; with K = 1 the task is stored as ``pattern=`` and equals the one made that way).
      photos: photo background only (required there): grey photographs ``[N, PH, PW]`` (an array-like, pixels
        usually in ``[0, 1]``, each at least ``image_shape``), stored as :class:`Photos`. Hold out photographs by
        giving the held-out task other ones: ``dataclasses.replace(task, photos=held_out)``.
      contrast: photo background only: ``(min, max)`` of the gain (or one number), ``0 < min <= max``.
      brightness: photo background only: ``(min, max)`` of the offset (or one number), ``min <= max``.
      plant_columns: ``None`` (copies are planted anywhere) or ``(lo, hi)``, ``0 <= lo < hi <= Wo``: copies are
        planted only with their top-left corner's column in ``lo <= j < hi`` (e.g. the left half of the positions,
        so that the rest are positions no training image plants at). On a binary background the targets still
        mark every exact occurrence, accidental ones anywhere included; near misses go anywhere.

    Raises:
      ValueError: an invalid value (pattern bigger than the image, empty or constant pattern, more instances
        than fit, a density outside ``[0, 1]``, a negative noise, a non-binary pattern on a binary background,
        both ``pattern`` and ``patterns``...).
      TypeError: an argument of the wrong type.

    Examples:
      >>> import jax
      >>> import jaxconv
      >>> task = jaxconv.PlantedPatternTask("seed", image_shape=(8, 8), instances=(1, 2))
      >>> task.pattern
      ((1.0, 1.0, 0.0), (1.0, 0.0, 0.0))
      >>> task.output_shape
      (7, 6)
      >>> images, targets, positions = task.sample(jax.random.key(0), 4)
      >>> images.shape, targets.shape, positions.shape
      ((4, 8, 8, 1), (4, 7, 6), (4, 2, 2))
      >>> jaxconv.PlantedPatternTask([[1, 0]], image_shape=1)
      Traceback (most recent call last):
      ...
      ValueError: PlantedPatternTask: `image_shape` must be at least the pattern's shape (1, 2); got (1, 1)

      Three patterns (a 2x3 one padded to the common 3x3 window): targets and positions get a pattern axis.

      >>> task = jaxconv.PlantedPatternTask(patterns=("hedge", "vedge", "ring"), image_shape=16, instances=1)
      >>> task.num_patterns, task.pattern_shape, task.output_shape
      (3, (3, 3), (14, 14))
      >>> images, targets, positions = task.sample(jax.random.key(0), 4)
      >>> images.shape, targets.shape, positions.shape
      ((4, 16, 16, 1), (4, 14, 14, 3), (4, 3, 2))

      Crops of photographs (here two random 20x24 "photos"), under contrast and brightness changes:

      >>> photos = np.random.default_rng(0).random((2, 20, 24))
      >>> task = jaxconv.PlantedPatternTask("ring", image_shape=12, background="photo", photos=photos,
      ...                                   amplitude=0.5, noise_std=0.01, contrast=(0.5, 2), brightness=(-1, 1))
      >>> task.photos
      Photos(shape=(2, 20, 24), sha256=...)
      >>> task.sample(jax.random.key(0), 4).images.shape
      (4, 12, 12, 1)
    """

    pattern: Any = None
    image_shape: Any = (32, 32)
    instances: Any = (1, 3)
    background: str = "binary"
    density: float = 0.3
    noise_std: float = 1.0
    amplitude: float = 1.0
    patterns: Any = None
    photos: Any = None
    contrast: Any = (1.0, 1.0)
    brightness: Any = (0.0, 0.0)
    plant_columns: Any = None

    def __post_init__(self) -> None:
        patterns = _as_patterns(self.pattern, self.patterns)
        argument = "pattern" if len(patterns) == 1 else "patterns"
        image_shape = _as_pair("image_shape", self.image_shape, 1)
        ph, pw = max(len(p) for p in patterns), max(len(p[0]) for p in patterns)
        if image_shape[0] < ph or image_shape[1] < pw:
            raise _fail("image_shape", f"at least the {argument[:7]}'s shape {(ph, pw)}", image_shape)
        instances = _as_pair("instances", self.instances, 0)
        if instances[0] > instances[1]:
            raise _fail("instances", "a pair (min, max) with min <= max", instances)
        ho, wo = image_shape[0] - ph + 1, image_shape[1] - pw + 1
        columns = None if self.plant_columns is None else _as_columns(self.plant_columns, wo)
        blocked, k = (2 * ph - 1) * (2 * pw - 1), len(patterns)
        if (k * instances[1] - 1) * blocked >= ho * (wo if columns is None else columns[1] - columns[0]):
            fit = ((ho * wo - 1) // blocked + 1) // k
            raise _fail(
                "instances",
                f"at most {fit} for {f'a {ph}x{pw} pattern' if k == 1 else f'{k} patterns in a {ph}x{pw} window'} "
                f"in a {image_shape[0]}x{image_shape[1]} image{'' if columns is None else f' (columns {columns})'} "
                "(so that every copy fits without overlap wherever the earlier ones landed)",
                instances,
            )
        if not isinstance(self.background, str) or self.background not in BACKGROUNDS:
            raise _fail("background", f"one of {BACKGROUNDS}", self.background)
        for p in patterns:
            _check_shape(argument, p, self.background)
        density = _as_float("density", self.density, "a number in [0, 1]", lambda v: 0 <= v <= 1)
        noise_std = _as_float("noise_std", self.noise_std, "a number > 0", lambda v: v > 0)
        amplitude = _as_float("amplitude", self.amplitude, "a number > 0", lambda v: v > 0)
        photo = self._photo_fields(image_shape)
        for name, value in [
            ("pattern", patterns[0] if k == 1 else None),
            ("patterns", None if k == 1 else patterns),
            ("image_shape", image_shape),
            ("instances", instances),
            ("density", density),
            ("noise_std", noise_std),
            ("amplitude", amplitude),
            *photo.items(),
            ("plant_columns", columns),
        ]:
            object.__setattr__(self, name, value)

    def _photo_fields(self, image_shape: tuple[int, int]) -> dict[str, Any]:
        """``photos``, ``contrast`` and ``brightness`` checked: set on a photo background, defaults elsewhere."""
        if self.background != "photo":
            for name, default in PHOTO_ONLY.items():
                value = getattr(self, name)
                if value is not None and (default is None or _as_range(name, value) != default):
                    raise _fail(name, f"{default} unless background is 'photo'", value)
            return dict(PHOTO_ONLY)
        photos = self.photos
        if isinstance(photos, dict):
            raise _fail("photos", "an array [N, PH, PW] (a saved task records only their digest)", photos, TypeError)
        if photos is None:
            raise _fail("photos", "an array [N, PH, PW] of grey photographs on a photo background", None, TypeError)
        if not isinstance(photos, Photos):
            try:
                array = np.asarray(photos, dtype=np.float32)
            except (TypeError, ValueError) as err:
                raise _fail("photos", "an array [N, PH, PW] of numbers", type(photos).__name__, TypeError) from err
            if array.ndim != 3 or array.shape[0] < 1:
                raise _fail("photos", "an array [N, PH, PW] with N >= 1", f"shape {array.shape}")
            if not np.all(np.isfinite(array)):
                raise _fail("photos", "finite", "non-finite pixels")
            photos = Photos(array)
        if photos.shape[1] < image_shape[0] or photos.shape[2] < image_shape[1]:
            raise _fail("photos", f"at least the image shape {image_shape} in each photograph", f"{photos.shape}")
        contrast = _as_range("contrast", self.contrast, low=0.0)
        return {"photos": photos, "contrast": contrast, "brightness": _as_range("brightness", self.brightness)}

    @property
    def all_patterns(self) -> tuple[Pattern, ...]:
        """The K patterns, unpadded (``(pattern,)`` for K = 1)."""
        return (self.pattern,) if self.patterns is None else self.patterns

    @property
    def num_patterns(self) -> int:
        """K, the number of patterns."""
        return len(self.all_patterns)

    @property
    def pattern_shape(self) -> tuple[int, int]:
        """``(PH, PW)``: the common window of the patterns (for K = 1, the pattern's shape)."""
        return max(len(p) for p in self.all_patterns), max(len(p[0]) for p in self.all_patterns)

    @property
    def pattern_array(self) -> np.ndarray:
        """The pattern as a ``[PH, PW]`` float32 NumPy array (K = 1; for any K see :attr:`templates`).

        Raises:
          ValueError: the task has K > 1 patterns.
        """
        if self.pattern is None:
            raise ValueError(
                f"PlantedPatternTask.pattern_array: the task has {self.num_patterns} patterns; use `templates`"
            )
        return np.asarray(self.pattern, dtype=np.float32)

    @property
    def templates(self) -> np.ndarray:
        """``[K, PH, PW]`` float32: each pattern padded with zeros at the bottom/right to the common window."""
        out = np.zeros((self.num_patterns, *self.pattern_shape), np.float32)
        for k, p in enumerate(self.all_patterns):
            out[k, : len(p), : len(p[0])] = np.asarray(p, np.float32)
        return out

    @property
    def masks(self) -> np.ndarray:
        """``[K, PH, PW]`` bool: which pixels of the common window belong to each pattern (all, for K = 1)."""
        out = np.zeros((self.num_patterns, *self.pattern_shape), bool)
        for k, p in enumerate(self.all_patterns):
            out[k, : len(p), : len(p[0])] = True
        return out

    @property
    def output_shape(self) -> tuple[int, int]:
        """``(Ho, Wo)``: the VALID positions of a pattern-sized window, where targets live."""
        ph, pw = self.pattern_shape
        return self.image_shape[0] - ph + 1, self.image_shape[1] - pw + 1

    def skeleton(self) -> PlantedPatternTask:
        """The task's static structure with placeholder numbers: equal for every task of the same pattern shapes,
        image shape, instances and background, whatever the patterns' contents, density, noise or amplitude.

        A jitted function that takes ``(task.skeleton(), task.values())`` — the first static, the second traced —
        compiles once for all those tasks. ``skeleton().sample_with(key, B, values())`` equals ``sample(key, B)``.

        Examples:
          >>> import jaxconv
          >>> a = jaxconv.PlantedPatternTask([[1, 0], [0, 1]], density=0.2)
          >>> b = jaxconv.PlantedPatternTask([[0, 1], [1, 1]], density=0.4)
          >>> a.skeleton() == b.skeleton(), a.skeleton().pattern
          (True, ((1.0, 0.0), (0.0, 0.0)))
        """
        placeholders = tuple(
            tuple(tuple(float(i == j == 0) for j in range(len(p[0]))) for i in range(len(p))) for p in self.all_patterns
        )
        shapes: dict[str, Any] = dict(pattern=placeholders[0]) if self.patterns is None else dict(patterns=placeholders)
        if self.photos is not None:
            shapes["photos"] = Photos(None, self.photos.shape)
        return dataclasses.replace(self, **shapes, density=0.5, noise_std=1.0, amplitude=1.0)

    def values(self) -> TaskValues:
        """The numbers that :meth:`skeleton` leaves out, as NumPy float32 arrays (see :class:`TaskValues`)."""
        pattern = self.pattern_array if self.patterns is None else self.templates
        photos = None if self.photos is None else self.photos.pixels
        numbers = (np.float32(self.density), np.float32(self.noise_std), np.float32(self.amplitude))
        return TaskValues(pattern, *numbers, photos)

    def sample_with(self, key: jax.Array, batch_size: int, values: TaskValues) -> Sample:
        """:meth:`sample` with the task's numbers taken from ``values`` (arrays, may be traced) instead of
        ``self``: for use inside a jitted function that got ``self`` static (usually a :meth:`skeleton`).

        Args:
          key: a PRNG key.
          batch_size: ``B >= 1``, a Python int.
          values: a :class:`TaskValues` whose pattern has this task's pattern shape.

        Returns:
          A :class:`Sample`, as :meth:`sample`.
        """
        return jax.vmap(lambda k: self._sample_one(k, values))(jax.random.split(key, batch_size))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``PlantedPatternTask(**d)`` turns back into an equal task (``pattern`` for
        K = 1, ``patterns`` for K > 1: the field left ``None`` is left out, as is ``plant_columns`` when ``None``; the
        photo background's fields only on a photo background). A photo task records its photographs' shape and
        SHA-256, not their pixels: its dict identifies it (a checkpoint's config compares equal) but does not rebuild
        it."""
        left_out = {"patterns" if self.patterns is None else "pattern", *(PHOTO_ONLY if self.photos is None else ())}
        if self.plant_columns is None:
            left_out.add("plant_columns")  # as dicts from before it existed
        out = {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in left_out}
        if self.photos is not None:
            out["photos"] = {"shape": list(self.photos.shape), "sha256": self.photos.digest}
        return out

    def sample(self, key: jax.Array, batch_size: int) -> Sample:
        """Draws ``batch_size`` images with their target maps; pure, jittable and vmappable.

        Args:
          key: a PRNG key (``jax.random.key`` or a raw ``uint32[2]`` key).
          batch_size: ``B >= 1``, a Python int.

        Returns:
          A :class:`Sample` ``(images [B,H,W,1], targets [B,Ho,Wo] (K = 1) or [B,Ho,Wo,K],
          positions [B,K*max_instances,2])``.

        Raises:
          ValueError: ``batch_size`` is not a positive int.

        Examples:
          >>> import jax
          >>> import jaxconv
          >>> task = jaxconv.PlantedPatternTask([[1, 0], [0, 1]], image_shape=(4, 5), instances=1, density=0.0)
          >>> batch = task.sample(jax.random.key(3), 1)
          >>> batch.images[0, :, :, 0]
          Array([[0., 0., 0., 1., 0.],
                 [0., 0., 0., 0., 1.],
                 [0., 0., 0., 0., 0.],
                 [0., 0., 0., 0., 0.]], dtype=float32)
          >>> batch.positions[0].tolist()
          [[0, 3]]
          >>> jax.numpy.argwhere(batch.targets[0]).tolist()
          [[0, 3]]
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"PlantedPatternTask.sample: `batch_size` must be an int >= 1; got {batch_size!r}")
        return _sample(self.skeleton(), key, int(batch_size), self.values())

    def _sample_one(self, key: jax.Array, values: TaskValues) -> Sample:
        k = self.num_patterns
        (ph, pw), masks = self.pattern_shape, self.masks
        patterns = jnp.asarray(values.pattern, jnp.float32).reshape(k, ph, pw)
        (h, w), (ho, wo) = self.image_shape, self.output_shape
        lo, hi = self.instances
        # One draw of random bits for everything (one threefry call keeps the compile small): the counts, the
        # background, and per slot a random score per position: the best-scored free one is uniform among them.
        # Slot s holds a copy of pattern s // hi.
        k_count, k_rest = jax.random.split(key)
        counts = jax.random.randint(k_count, (k,), lo, hi + 1)
        if self.background == "binary":
            noise = jax.random.uniform(k_rest, (h * w + k * hi * ho * wo,), jnp.float32)
            image = (noise[: h * w] < values.density).astype(jnp.float32).reshape(h, w)
        elif self.background == "gaussian":
            noise = jax.random.normal(k_rest, (h * w + k * hi * ho * wo,), jnp.float32)
            image = values.noise_std * noise[: h * w].reshape(h, w)
        else:
            k_rest, k_crop = jax.random.split(k_rest)
            noise = jax.random.normal(k_rest, (h * w + k * hi * ho * wo,), jnp.float32)
            image, (gain, offset) = self._crop(k_crop, values.photos)
        # Any continuous noise ranks the free positions in a uniformly random order; argmax picks the first.
        slot_noise = noise[h * w :].reshape(k * hi, ho * wo)
        which = np.arange(k * hi) // max(hi, 1)

        rows, cols = jnp.arange(ho)[:, None], jnp.arange(wo)[None, :]

        def place(carry: tuple[jax.Array, jax.Array], slot: tuple[Any, ...]) -> tuple[Any, jax.Array]:
            image, free = carry
            index, scores, pattern, mask, kind = slot
            active = index % max(hi, 1) < counts[kind]
            flat = jnp.argmax(jnp.where(free.reshape(-1), scores, -jnp.inf))
            i, j = flat // wo, flat % wo
            current = lax.dynamic_slice(image, (i, j), (ph, pw))
            if self.background == "binary":
                pasted = jnp.where(mask, pattern, current)
            else:
                pasted = current + values.amplitude * pattern
            image = lax.dynamic_update_slice(image, jnp.where(active, pasted, current), (i, j))
            overlaps = (jnp.abs(rows - i) < ph) & (jnp.abs(cols - j) < pw)
            free = jnp.where(active, free & ~overlaps, free)
            position = jnp.where(active, jnp.stack([i, j]), -1).astype(jnp.int32)
            return (image, free), position

        free = jnp.ones((ho, wo), bool)
        if self.plant_columns is not None:
            free &= (cols >= self.plant_columns[0]) & (cols < self.plant_columns[1])
        slots = (jnp.arange(k * hi), slot_noise, patterns[which], jnp.asarray(masks[which]), jnp.asarray(which))
        (image, _), positions = lax.scan(place, (image, free), slots)
        positions = positions.reshape(k * hi, 2)
        if self.background == "photo":
            image = gain * image + offset + values.noise_std * noise[: h * w].reshape(h, w)

        if self.background == "binary":
            targets = _exact_targets(image, patterns, masks)
        else:
            active = positions[:, 0] >= 0
            at = (jnp.where(active, positions[:, 0], ho), jnp.where(active, positions[:, 1], wo))
            if k == 1:
                targets = jnp.zeros((ho, wo), jnp.float32).at[at].set(1.0, mode="drop")
            else:
                index = at + (jnp.asarray(which),)
                targets = jnp.zeros((ho, wo, k), jnp.float32).at[index].set(1.0, mode="drop")
        return Sample(image[:, :, None], targets, positions)

    def _crop(self, key: jax.Array, photos: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """A uniformly random ``[H, W]`` crop of a uniformly random photograph, and the gain and offset to apply."""
        (n, ph, pw), (h, w) = self.photos.shape, self.image_shape
        bits = jax.random.uniform(key, (5,), jnp.float32)
        counts = np.array([n, ph - h + 1, pw - w + 1])
        which = jnp.minimum((bits[:3] * counts).astype(jnp.int32), counts - 1)  # each uniform in range(count)
        crop = lax.dynamic_slice(jnp.asarray(photos, jnp.float32), (which[0], which[1], which[2]), (1, h, w))[0]
        (c0, c1), (b0, b1) = self.contrast, self.brightness
        return crop, (c0 + (c1 - c0) * bits[3], b0 + (b1 - b0) * bits[4])


@functools.partial(jax.jit, static_argnames=("task", "batch_size"))
def _sample(task: PlantedPatternTask, key: jax.Array, batch_size: int, values: TaskValues) -> Sample:
    return task.sample_with(key, batch_size, values)


def exact_matches(image: jax.Array, pattern: jax.Array, mask: np.ndarray | None = None) -> jax.Array:
    """``[H - PH + 1, W - PW + 1]`` float32: 1 where the ``[H, W]`` image holds ``pattern [PH, PW]`` exactly.

    With ``mask`` (``[PH, PW]`` bool, concrete), only the pixels where it is true must match (a smaller pattern
    padded to a common window: the padding is not part of it).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv.lab._data import exact_matches
      >>> image = jnp.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
      >>> exact_matches(image, jnp.array([[1.0, 1.0], [0.0, 0.0]])).tolist()
      [[0.0, 0.0]]
      >>> top_row = np.array([[True, True], [False, False]])
      >>> exact_matches(image, jnp.array([[1.0, 1.0], [0.0, 0.0]]), mask=top_row).tolist()
      [[1.0, 0.0]]
    """
    ph, pw = pattern.shape
    ho, wo = image.shape[0] - ph + 1, image.shape[1] - pw + 1
    match = jnp.ones((ho, wo), bool)
    for a in range(ph):
        for b in range(pw):
            if mask is None or mask[a, b]:
                match &= image[a : a + ho, b : b + wo] == pattern[a, b]
    return match.astype(jnp.float32)


def _exact_targets(image: jax.Array, patterns: jax.Array, masks: np.ndarray) -> jax.Array:
    """Every exact occurrence of each pattern ``[K, PH, PW]``: ``[Ho, Wo]`` for K = 1, else ``[Ho, Wo, K]``."""
    if len(masks) == 1:
        return exact_matches(image, patterns[0])
    return jnp.stack([exact_matches(image, patterns[k], masks[k]) for k in range(len(masks))], axis=-1)


def plant_near_misses(
    task: PlantedPatternTask, key: jax.Array, batch: Sample, count: int, values: TaskValues
) -> Sample:
    """Pastes ``count`` near misses of each pattern — copies of it with one random pixel (of its own) flipped —
    into every image of a binary-background batch, clear of the planted copies where there is room, and
    recomputes the targets.

    Near misses are the negatives that decide a binary detector's threshold, and random images almost never
    hold them. They are also enough: a linear detector of the pattern's size that fires on the pattern and on
    none of its one-pixel flips fires on no other window (each flip must lower the logit by more than the
    pattern's own logit, so ``k`` flips lower it by more than ``k`` times that).

    Args:
      task: a binary-background :class:`PlantedPatternTask` (static; usually a :meth:`~PlantedPatternTask.skeleton`).
      key: a PRNG key.
      batch: a :class:`Sample` of ``task``.
      count: near misses of each pattern per image, a Python int ``>= 0``, each at a random place clear of the
        planted copies (in a small image with no such place: anywhere, possibly over a planted copy, which the
        targets then no longer hold).
      values: the task's :class:`TaskValues`.

    Returns:
      The :class:`Sample` with the near misses pasted in, its ``targets`` recomputed (every exact occurrence of
      each pattern);
      ``positions`` (the planted copies) unchanged.

    Examples:
      >>> import jax
      >>> import jaxconv
      >>> from jaxconv.lab._data import plant_near_misses
      >>> task = jaxconv.PlantedPatternTask([[1, 1], [1, 0]], image_shape=(9, 9), instances=1, density=0.0)
      >>> batch = task.sample(jax.random.key(0), 2)
      >>> more = plant_near_misses(task, jax.random.key(1), batch, 3, task.values())
      >>> bool((more.targets == batch.targets).all()), int(more.images.sum() - batch.images.sum()) in range(0, 13)
      (True, True)
    """
    if task.background != "binary":
        raise ValueError(f"plant_near_misses: `task` must have a binary background; got {task.background!r}")
    k = task.num_patterns
    (ph, pw), masks = task.pattern_shape, task.masks
    patterns = jnp.asarray(values.pattern, jnp.float32).reshape(k, ph, pw)
    ho, wo = task.output_shape
    rows, cols = jnp.arange(ho)[:, None], jnp.arange(wo)[None, :]
    # Near miss s is of pattern s // count; its flipped pixel is the n-th of that pattern's own pixels.
    which = np.arange(k * count) // max(count, 1)
    sizes = masks.reshape(k, -1).sum(-1)
    rank = (np.cumsum(masks.reshape(k, -1), axis=-1) - 1).reshape(k, ph, pw)
    maxval = int(sizes[0]) if k == 1 else jnp.asarray(sizes[which])

    def one(key: jax.Array, image: jax.Array, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
        image = image[:, :, 0]
        free = jnp.ones((ho, wo), bool)
        for i, j in positions:  # planted copies (slots of -1 are unused)
            free &= (i < 0) | (jnp.abs(rows - i) >= ph) | (jnp.abs(cols - j) >= pw)
        k_where, k_pixel = jax.random.split(key)
        scores = jax.random.uniform(k_where, (k * count, ho * wo))
        pixels = jax.random.randint(k_pixel, (k * count,), 0, maxval)

        def paste(image: jax.Array, slot: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
            score, pixel, pattern, mask, rank = slot
            flat = jnp.argmax(score + free.reshape(-1))  # a free place if there is one
            i, j = flat // wo, flat % wo
            flipped = mask & (rank == pixel)
            current = lax.dynamic_slice(image, (i, j), (ph, pw))
            pasted = jnp.where(mask, jnp.where(flipped, 1 - pattern, pattern), current)
            return lax.dynamic_update_slice(image, pasted, (i, j)), None

        slots = (scores, pixels, patterns[which], jnp.asarray(masks[which]), jnp.asarray(rank[which]))
        image, _ = lax.scan(paste, image, slots)
        return image[:, :, None], _exact_targets(image, patterns, masks)

    keys = jax.random.split(key, batch.images.shape[0])
    images, targets = jax.vmap(one)(keys, batch.images, batch.positions)
    return Sample(images, targets, batch.positions)


def _as_range(name: str, value: Any, low: float | None = None) -> tuple[float, float]:
    """``(min, max)`` floats from a number or a pair, ``min <= max`` (and ``min > low`` when ``low`` is given)."""
    allowed = "a number or a pair (min, max) with min <= max" + ("" if low is None else f" and min > {low}")
    pair = value if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, float, np.integer, np.floating)) for v in pair):
        raise _fail(name, allowed, value, TypeError)
    lo, hi = float(pair[0]), float(pair[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi and (low is None or lo > low)):
        raise _fail(name, allowed, value)
    return lo, hi


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


__all__ = [
    "PATTERNS",
    "BACKGROUNDS",
    "PHOTO_ONLY",
    "Photos",
    "PlantedPatternTask",
    "Sample",
    "TaskValues",
    "exact_matches",
    "plant_near_misses",
]
