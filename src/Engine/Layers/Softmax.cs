using System.Numerics.Tensors;

namespace BitMoe.Engine.Layers;

/// <summary>Numerically stable softmax (TensorPrimitives.SoftMax does not subtract the maximum).</summary>
public static class Softmax
{
    public static void InPlace(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        float sum = TensorPrimitives.Sum(x);
        TensorPrimitives.Divide(x, sum, x);
    }
}
