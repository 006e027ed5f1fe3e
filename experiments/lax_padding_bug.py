"""Does the installed XLA still compute ``lax.conv_general_dilated``'s input gradient wrongly? And jaxconv's?

    python experiments/lax_padding_bug.py                    # about a minute on a 2-core CPU
    python experiments/lax_padding_bug.py --sweep 40 --out runs/lax_bug

When one side's padding exceeds the kernel's reach ``(K - 1) * d`` and the other's does not, JAX transposes the
convolution w.r.t. its input into one with negative low padding, which XLA:CPU computes wrongly
(openxla/xla#48713: it reads outside the input buffer; #48715: under jit the algebraic simplifier also folds
cropping pads into a convolution's window). jaxconv hands XLA only padding within the reach
(``jaxconv.conv._strategies.xla_padding``).

For issue 10's two reproducers, a seeded random sweep of such paddings and a few controls within the reach, the
input and kernel gradients of ``sum(conv * ct)`` in float32 from ``lax.conv_general_dilated`` and from
``jaxconv.conv2d`` (``"xla"`` and ``"auto"``), eager and under jit, are compared with a NumPy float64 loop. Prints
a table and whether the installed XLA still has the bug (when it no longer does, the workaround can go), times
the jitted value-and-gradient of both side by side on two beyond-reach shapes (the price of being right), and
writes ``results.json`` under ``--out``. Exits 1 if jaxconv's gradients are wrong anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import jax
import numpy as np
from jax import lax

import jaxconv
from jaxconv import evidence

# Relative error (max |error| / max |reference|) above which a float32 gradient counts as wrong: float32 rounding
# of these small sums stays below 1e-5; the bug's errors are 0.3 to 1e19.
WRONG = 1e-3


def reference_vjp(x: np.ndarray, kernel: np.ndarray, ct: np.ndarray, case: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(dx, dkernel)`` of ``sum(conv(x, kernel) * ct)`` by a plain float64 loop over output positions and taps."""
    (top, bottom), (left, right) = case["padding"]
    (sh, sw), (dh, dw) = case["stride"], case["dilation"]
    xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    kernel, ct = kernel.astype(np.float64), ct.astype(np.float64)
    dxp, dk = np.zeros_like(xp), np.zeros_like(kernel)
    for i in range(ct.shape[1]):
        for j in range(ct.shape[2]):
            for a in range(kernel.shape[0]):
                for b in range(kernel.shape[1]):
                    r, s = i * sh + a * dh, j * sw + b * dw
                    dxp[:, r, s, :] += ct[:, i, j, :] @ kernel[a, b].T
                    dk[a, b] += xp[:, r, s, :].T @ ct[:, i, j, :]
    return dxp[:, top : top + x.shape[1], left : left + x.shape[2]], dk


def implementations(case: dict) -> dict[str, Any]:
    """``name -> f(x, kernel)``: lax's own convolution and jaxconv's ``xla`` and ``auto`` strategies."""
    opts = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])

    def lax_conv(x: jax.Array, k: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(
            x, k, case["stride"], case["padding"], rhs_dilation=case["dilation"],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )  # fmt: skip

    return {
        "lax.conv_general_dilated": lax_conv,
        "jaxconv xla": lambda x, k: jaxconv.conv2d(x, k, **opts, strategy="xla"),
        "jaxconv auto": lambda x, k: jaxconv.conv2d(x, k, **opts, strategy="auto"),
    }


def relative_error(actual: jax.Array, expected: np.ndarray) -> float:
    """``max |actual - expected| / max |expected|``; ``inf`` where ``actual`` is not finite."""
    actual = np.asarray(actual, np.float64)
    if not np.all(np.isfinite(actual)):
        return float("inf")
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def run_case(case: dict) -> dict:
    """Every implementation's input/kernel gradient error, eager and jit, for one configuration."""
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"]).astype(np.float32)
    kernel = rng.standard_normal(case["kernel_shape"]).astype(np.float32)
    f = implementations(case)["lax.conv_general_dilated"]
    ct = rng.standard_normal(jax.eval_shape(f, x, kernel).shape).astype(np.float32)
    dx_ref, dk_ref = reference_vjp(x, kernel, ct, case)
    errors: dict[str, dict[str, float]] = {}
    for name, conv in implementations(case).items():

        def grads(x: jax.Array, k: jax.Array, ct: jax.Array, conv: Any = conv) -> tuple:
            return jax.vjp(conv, x, k)[1](ct)

        for mode, run in (("eager", grads), ("jit", jax.jit(grads))):
            dx, dk = run(x, kernel, ct)
            errors[f"{name} {mode}"] = {"dx": relative_error(dx, dx_ref), "dkernel": relative_error(dk, dk_ref)}
    return {**case, "errors": errors}


def beyond_reach(case: dict) -> bool:
    """Whether some side's padding exceeds the kernel's reach ``(K - 1) * d`` along its axis."""
    reaches = [(k - 1) * d for k, d in zip(case["kernel_shape"][:2], case["dilation"], strict=True)]
    return any(p > r for sides, r in zip(case["padding"], reaches, strict=True) for p in sides)


def cases(sweep: int, seed: int) -> list[dict]:
    """Issue 10's reproducers, three controls within the reach, and ``sweep`` beyond-reach configurations.

    Every other sweep configuration is drawn near #48713's form, where lax's transpose has no positive low padding
    on either axis, a negative one and a positive high padding (XLA:CPU's Eigen path then skips its padding checks;
    not every such case reads memory it should not): stride 1, top (or left) padding beyond the reach by ``over``,
    bottom (right) short of it by ``1..over``, the other axis's low padding at least its reach, at most 16 channels
    (more take XLA:CPU's YNNPACK path, which is right). The rest are drawn at random: any stride, either side beyond.
    """

    def case(name: str, x_shape: tuple, kernel_shape: tuple, padding: tuple, stride=(1, 1), dilation=(1, 1), s=0):
        return {"name": name, "x_shape": x_shape, "kernel_shape": kernel_shape, "padding": padding,
                "stride": stride, "dilation": dilation, "seed": s}  # fmt: skip

    out = [
        case("issue: 12 channels, auto", (2, 9, 10, 12), (3, 3, 12, 1), ((3, 1), (4, 4))),
        case("issue: 2x2 kernel, xla", (2, 7, 8, 3), (2, 2, 3, 4), ((2, 1), (2, 0))),
        case("control: SAME 3x3", (2, 9, 10, 12), (3, 3, 12, 4), ((1, 1), (1, 1))),
        case("control: FULL 3x3", (2, 9, 10, 12), (3, 3, 12, 4), ((2, 2), (2, 2))),
        case("control: stride 2", (2, 9, 10, 12), (3, 3, 12, 4), ((2, 0), (1, 2)), stride=(2, 2)),
    ]
    rng = np.random.default_rng(seed)
    for i in range(sweep):
        targeted = i % 2 == 0
        kh, kw = (int(v) for v in rng.integers(2 if targeted else 1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2))
        sh, sw = (1, 1) if targeted else (int(v) for v in rng.integers(1, 3, 2))
        c, o = int(rng.choice([1, 3, 8, 12, 16] if targeted else [1, 3, 8, 12, 16, 20])), int(rng.choice([1, 4, 12]))
        rh, rw = (kh - 1) * dh, (kw - 1) * dw
        if targeted:  # top beyond the reach by `over`, bottom short of it by 1..over, left at least the reach
            over = int(rng.integers(1, 4))
            pads_h = (rh + over, rh - int(rng.integers(1, min(over, rh) + 1)))
            pads_w = (rw + int(rng.integers(0, 4)), int(rng.integers(0, rw + 4)))
        else:
            beyond, within = int(rng.integers(rh + 1, rh + 4)), int(rng.integers(0, rh + 1))
            pads_h = (beyond, within) if rng.integers(2) else (within, beyond)
            pads_w = tuple(int(v) for v in rng.integers(0, rw + 4, 2))
        h, w = int(rng.integers(max(3, rh + 1), 10)), int(rng.integers(max(3, rw + 1), 10))
        padding, x_shape, k_shape = (pads_h, pads_w), (2, h, w, c), (kh, kw, c, o)
        if targeted and rng.integers(2):  # the same along the width
            padding, x_shape, k_shape = (pads_w, pads_h), (2, w, h, c), (kw, kh, c, o)
            dh, dw = dw, dh
        name = f"sweep {i} {'#48713 form' if targeted else 'random'}"
        out.append(case(name, x_shape, k_shape, padding, (sh, sw), (dh, dw), s=i + 1))
    return out


TIMED = (
    ("issue shape 2x9x10x12 k3 12->1", (2, 9, 10, 12), (3, 3, 12, 1), ((3, 1), (4, 4))),
    ("4x32x32x16 k3 16->16", (4, 32, 32, 16), (3, 3, 16, 16), ((3, 1), (1, 1))),
)


def timing(repeats: int) -> list[dict]:
    """Milliseconds per jitted value-and-gradient call, lax (wrong) vs jaxconv ``xla`` (right), interleaved, median."""
    rows = []
    for name, x_shape, kernel_shape, padding in TIMED:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(x_shape).astype(np.float32)
        kernel = rng.standard_normal(kernel_shape).astype(np.float32)
        case = {"padding": padding, "stride": (1, 1), "dilation": (1, 1)}
        convs = implementations(case)
        calls = {
            name: jax.jit(jax.value_and_grad(lambda x, k, conv=convs[name]: (conv(x, k) ** 2).sum(), argnums=(0, 1)))
            for name in ("lax.conv_general_dilated", "jaxconv xla")
        }
        seconds: dict[str, list[float]] = {n: [] for n in calls}
        for f in calls.values():
            jax.block_until_ready(f(x, kernel))
        for _ in range(repeats):
            for n, f in calls.items():
                start = time.perf_counter()
                jax.block_until_ready(f(x, kernel))
                seconds[n].append(time.perf_counter() - start)
        ms = {n: 1e3 * statistics.median(v) for n, v in seconds.items()}
        rows.append({"name": name, "padding": padding, "repeats": repeats, "median_ms": ms,
                     "ratio_jaxconv_over_lax": ms["jaxconv xla"] / ms["lax.conv_general_dilated"]})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=int, default=16, help="random beyond-reach configurations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sweep's configurations")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per implementation (0: no timing)")
    parser.add_argument("--out", help="output directory (default runs/lax_padding_bug-<timestamp>)")
    args = parser.parse_args(argv)
    for flag in ("sweep", "repeats"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag} must be >= 0; got {getattr(args, flag)}")
    try:
        out = evidence.prepare_out(args.out or evidence.default_out("lax_padding_bug"))
    except ValueError as err:
        parser.error(str(err))

    rows = [run_case(c) for c in cases(args.sweep, args.seed)]
    names = list(rows[0]["errors"])
    summary = {}
    for name in names:
        worst = [max(r["errors"][name].values()) for r in rows if beyond_reach(r)]
        control = [max(r["errors"][name].values()) for r in rows if not beyond_reach(r)]
        summary[name] = {
            "beyond_reach_wrong": sum(e > WRONG for e in worst),
            "beyond_reach_cases": len(worst),
            "beyond_reach_max_error": max(worst),
            "within_reach_max_error": max(control),
        }
    lax_wrong = any(summary[n]["beyond_reach_wrong"] for n in names if n.startswith("lax"))
    jaxconv_right = all(
        summary[n]["beyond_reach_wrong"] == 0 and summary[n]["within_reach_max_error"] <= WRONG
        for n in names
        if n.startswith("jaxconv")
    )
    verdict = (
        "the installed XLA still computes lax.conv_general_dilated's gradient wrongly beyond the kernel's reach "
        "(openxla/xla#48713, #48715): keep jaxconv's workaround"
        if lax_wrong
        else "lax.conv_general_dilated's gradients were right on every case here: the installed XLA looks fixed, "
        "and jaxconv's workaround (jaxconv.conv._strategies.xla_padding) could be dropped"
    )
    results = {
        "config": {**vars(args), "out": out, "wrong_threshold": WRONG, "dtype": "float32"},
        "environment": evidence.environment(None, None),
        "xla_bug_present": lax_wrong,
        "jaxconv_correct": jaxconv_right,
        "verdict": verdict,
        "summary": summary,
        "cases": rows,
        "timing": timing(args.repeats) if args.repeats else [],
    }
    evidence.write_json(os.path.join(out, "results.json"), results)

    print(f"jax {jax.__version__}, {results['environment']['device']}, {results['environment']['cpu']}")
    print("relative error of the worst gradient (input or kernel) vs a NumPy float64 loop; eager / jit")
    width = 27
    print(f"{'case':<26}{'padding':<18}" + "".join(f"{n.replace(' eager', ''):>{width}}" for n in names[::2]))
    for r in rows:
        cells = "".join(
            f"{_fmt(max(r['errors'][e].values())) + ' / ' + _fmt(max(r['errors'][j].values())):>{width}}"
            for e, j in zip(names[::2], names[1::2], strict=True)
        )
        print(f"{r['name']:<26}{str(r['padding']):<18}{cells}")
    for name in names:
        s = summary[name]
        print(f"{name:<32} wrong on {s['beyond_reach_wrong']:>2} of {s['beyond_reach_cases']} beyond-reach cases")
    print(verdict)
    for t in results["timing"]:
        ms = t["median_ms"]
        print(
            f"value+grad, jit, {t['name']} padded {t['padding']}: lax {ms['lax.conv_general_dilated']:.3f} ms "
            f"(wrong), jaxconv xla {ms['jaxconv xla']:.3f} ms (right), ratio {t['ratio_jaxconv_over_lax']:.2f}"
        )
    print(f"wrote {out}")
    return 0 if jaxconv_right else 1


def _fmt(error: float) -> str:
    return "inf" if error == float("inf") else f"{error:.1e}"


if __name__ == "__main__":
    sys.exit(main())
