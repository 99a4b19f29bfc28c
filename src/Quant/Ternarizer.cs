using BitMoe.Kernels;

namespace BitMoe.Quant;

/// <summary>BitNet b1.58 absmean weight quantization: one scale per tensor, values in {-1, 0, +1}.</summary>
public static class Ternarizer
{
    /// <summary>s_w = 1 / max(mean(|W|), 1e-5).</summary>
    public static float Scale(float mean) => 1f / MathF.Max(mean, 1e-5f);

    /// <summary>Wq = clamp(round(W * s_w), -1, 1), rounding half to even like torch.round.</summary>
    public static sbyte Quantize(float w, float scale)
    {
        float r = MathF.Round(w * scale, MidpointRounding.ToEven);
        return (sbyte)Math.Clamp(r, -1f, 1f);
    }

    /// <summary>Mean |W| of a tensor read through the memory map, one row at a time.</summary>
    public static unsafe float MeanAbs(void* data, DType type, long rows, int cols)
    {
        // float32 sums over millions of values drift; a double sum is the honest mean, and its
        // last-bit difference from torch's float32 reduction only matters on exact .5 ties.
        var row = new float[cols];
        double sum = 0;
        for (long r = 0; r < rows; r++)
        {
            FloatGemv.ToSingle(data, type, r * cols, row);
            for (int c = 0; c < cols; c++) sum += Math.Abs(row[c]);
        }
        return (float)(sum / (rows * (double)cols));
    }

    /// <summary>Ternarizes a whole [rows, cols] tensor into one sbyte per weight.</summary>
    public static unsafe (sbyte[] Values, float Scale) Quantize(void* data, DType type, int rows, int cols)
    {
        float scale = Scale(MeanAbs(data, type, rows, cols));
        var q = new sbyte[(long)rows * cols];
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            FloatGemv.ToSingle(data, type, (long)r * cols, row);
            for (int c = 0; c < cols; c++) q[(long)r * cols + c] = Quantize(row[c], scale);
        }
        return (q, scale);
    }
}
