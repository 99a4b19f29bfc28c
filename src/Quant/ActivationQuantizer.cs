using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace BitMoe.Quant;

/// <summary>BitNet b1.58 absmax activation quantization: one scale per token, int8 values.</summary>
public static class ActivationQuantizer
{
    /// <summary>
    /// xq = clamp(round(x * s_x), -128, 127) with s_x = 127 / max(max|x|, 1e-5); returns s_x.
    /// Float32 throughout and half-to-even rounding, exactly as the PyTorch training forward.
    /// </summary>
    public static float Quantize(ReadOnlySpan<float> x, Span<sbyte> xq)
    {
        float amax = System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(x);
        amax = MathF.Abs(amax);
        float s = 127f / MathF.Max(amax, 1e-5f);
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // the same float multiply, ties-to-even rounding and clamp on 64 values at a time, then narrowed exactly
            var scale = Vector512.Create(s);
            var lo = Vector512.Create(-128f);
            var hi = Vector512.Create(127f);
            ref float px = ref MemoryMarshal.GetReference(x);
            ref sbyte pq = ref MemoryMarshal.GetReference(xq);
            for (; i + 64 <= x.Length; i += 64)
            {
                var a = Vector512.ConvertToInt32(Vector512.Min(Vector512.Max(Vector512.Round(Vector512.LoadUnsafe(ref px, (nuint)i) * scale), lo), hi));
                var b = Vector512.ConvertToInt32(Vector512.Min(Vector512.Max(Vector512.Round(Vector512.LoadUnsafe(ref px, (nuint)i + 16) * scale), lo), hi));
                var c = Vector512.ConvertToInt32(Vector512.Min(Vector512.Max(Vector512.Round(Vector512.LoadUnsafe(ref px, (nuint)i + 32) * scale), lo), hi));
                var d = Vector512.ConvertToInt32(Vector512.Min(Vector512.Max(Vector512.Round(Vector512.LoadUnsafe(ref px, (nuint)i + 48) * scale), lo), hi));
                Vector512.Narrow(Vector512.Narrow(a, b), Vector512.Narrow(c, d)).StoreUnsafe(ref pq, (nuint)i);
            }
        }
        for (; i < x.Length; i++)
        {
            float r = MathF.Round(x[i] * s, MidpointRounding.ToEven);
            xq[i] = (sbyte)Math.Clamp(r, -128f, 127f);
        }
        return s;
    }
}
