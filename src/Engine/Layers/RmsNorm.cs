using BitMoe.Engine.Weights;
using System.Numerics.Tensors;

namespace BitMoe.Engine.Layers;

/// <summary>y = x / sqrt(mean(x^2) + eps) * w, in float32 (Llama's RMSNorm).</summary>
public sealed class RmsNorm(float[] weight, float eps)
{
    public int Size => weight.Length;

    /// <summary>Bytes of the float32 weight, read once per call.</summary>
    public long WeightBytes => weight.Length * (long)sizeof(float);

    public static RmsNorm Load(ModelWeights weights, string name, int size, float eps) =>
        new(weights.Take(name + ".weight", size).ToFloatArray(), eps);

    public void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        int n = weight.Length;
        x = x[..n];
        float meanSquare = TensorPrimitives.SumOfSquares(x) / n;
        float inv = 1f / MathF.Sqrt(meanSquare + eps);
        TensorPrimitives.Multiply(x, inv, y[..n]);
        TensorPrimitives.Multiply(y[..n], weight, y[..n]);
    }

    /// <summary>Normalises each of <paramref name="count"/> rows of x [count, size] into y (may be x).</summary>
    public void ForwardBatch(ReadOnlySpan<float> x, Span<float> y, int count)
    {
        int n = weight.Length;
        for (int t = 0; t < count; t++) Forward(x.Slice(t * n, n), y.Slice(t * n, n));
    }
}
