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
        for (int i = 0; i < x.Length; i++)
        {
            float r = MathF.Round(x[i] * s, MidpointRounding.ToEven);
            xq[i] = (sbyte)Math.Clamp(r, -128f, 127f);
        }
        return s;
    }
}
