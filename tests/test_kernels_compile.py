"""The Triton kernel compiles for an H100 (sm_90) without a GPU: catches what the interpreter
cannot (type unification across loops, layouts, shared-memory limits) before a GPU run."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from interp.kernels.triton_stats import _attention_stats_kernel as fn, launch_config

    cfg = launch_config(128, 4096, interpreted=False)
    new = sys.argv[1] == "on"  # sliding window, softcap and sinks on or off
    const = dict(CAUSAL=True, WINDOW=new, SOFTCAP=new, HAS_SINK=new, HAS_PAD=True,
                 HAS_TGT=True, HAS_RNG=True, PRECISION="tf32", DOT_FP32=False,
                 BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_D=128, BLOCK_R=16)
    ptrs = dict(Q="*bf16", K="*bf16", PAD="*u8", TGT="*i64", RNG="*i64", SINK="*fp32",
                LSE="*fp32", ARG="*i64", MAXP="*fp32", TP="*fp32", RM="*fp32",
                qk_scale="fp32", cap_log2="fp32")
    sig = {n: "constexpr" if n in const else ptrs.get(n, "i32") for n in fn.arg_names}
    opts = dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const),
                            target=GPUTarget("cuda", 90, 32), options=opts)
    assert "wgmma" in kernel.asm["ptx"], "expected Hopper tensor-core instructions"
    print("shared", kernel.metadata.shared)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("window_softcap_sinks", ["on", "off"])
def test_kernel_compiles_for_hopper(window_softcap_sinks):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, window_softcap_sinks],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) <= 227 * 1024  # fits an H100's shared memory
