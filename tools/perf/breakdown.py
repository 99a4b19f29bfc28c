#!/usr/bin/env python3
"""Where a bitmoe run spends its CPU time, by engine component, from `perf script` call stacks.

    DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0 \
      perf record -g -e cpu-clock -F 250 -o perf.data -- \
      dotnet src/Cli/bin/Release/net10.0/bitmoe.dll bench -m MODEL -p 0 -n 128 -r 4 -t 1
    perf script -i perf.data > perf.txt
    python3 tools/perf/breakdown.py perf.txt

Each sample goes to the first component found walking its stack from the leaf to the root (so a
TensorPrimitives.Dot under FloatGemv counts as FloatGemv, under Attention as attention). cpu-clock
sampling works in VMs without hardware counters; the perf map (DOTNET_PerfMapEnabled) names JIT-compiled
methods and W^X off keeps JIT code out of the double-mapped memfd that perf cannot resolve.
"""
import re
import sys
from collections import Counter

# (component, pattern), tried in order on every frame, leaf first.
COMPONENTS = [
    ("model load (repack, unpack)", r"TernaryGemv::PackRow|Tq2Layout|Tq1Layout|TqRepack|ToKernelLayout|ModelLoader|Quantizer|Ternarizer|ToFloatArray"),
    ("memory bandwidth probe", r"MemoryBandwidth"),
    ("ternary matmul kernels", r"BitMoe\.Kernels\.TernaryGemv::|BitMoe\.Kernels\.TernaryGemm::"),
    ("float matmul (F16/F32 weights: lm_head)", r"BitMoe\.Kernels\.FloatGemv::"),
    ("activation int8 quantize + streams", r"ActivationQuantizer|TernaryActivations::Prepare"),
    ("attention (scores, softmax, sum over V, RoPE)", r"Layers\.Attention::|Layers\.Rope::|Layers\.Softmax::"),
    ("RMSNorm", r"Layers\.RmsNorm::"),
    ("router + MoE glue", r"Layers\.Router::|Layers\.MhMoeLayer::"),
    ("FFN activation (silu/relu2, products)", r"Layers\.DenseFfn::"),
    ("BitLinear glue (rescale, bias)", r"Layers\.BitLinear::"),
    ("residual adds, embedding, argmax", r"Layers\.DecoderLayer::|BitMoe\.Engine\.Transformer::|Evaluation\.Benchmark::"),
    ("worker pool wait / wake", r"WorkerPool|ManualResetEventSlim|futex|SpinWait"),
    ("JIT and runtime", r"libclrjit|libcoreclr|libhostpolicy|libhostfxr"),
]


def samples(lines):
    frames = []
    for line in lines:
        if not line.strip():
            if frames:
                yield frames
            frames = []
        elif line.startswith((" ", "\t")):
            frames.append(line.strip())
    if frames:
        yield frames


def classify(frames):
    compiled = [(name, re.compile(p)) for name, p in COMPONENTS]
    for f in frames:
        for name, rx in compiled:
            if rx.search(f):
                return name
    return "other (kernel, libc, unresolved)"


def main(path):
    with open(path, errors="replace") as fh:
        counts = Counter(classify(s) for s in samples(fh))
    total = sum(counts.values())
    setup = counts["model load (repack, unpack)"] + counts["memory bandwidth probe"] + counts["JIT and runtime"]
    run = total - setup
    print(f"{total} samples; {run} outside model load, bandwidth probe and JIT/runtime")
    print(f"{'component':48} {'all':>7} {'run':>7}")
    for name, n in counts.most_common():
        share = "" if name in ("model load (repack, unpack)", "memory bandwidth probe", "JIT and runtime") else f"{n / max(run, 1) * 100:6.1f}%"
        print(f"{name:48} {n / total * 100:6.1f}% {share:>7}")


if __name__ == "__main__":
    main(sys.argv[1])
