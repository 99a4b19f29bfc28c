namespace BitMoe.Engine.Layers;

/// <summary>
/// Rotary position embedding, HF "rotate_half" convention: element i of each head is paired with
/// element i + head_dim/2 and rotated by pos * theta^(-2i/head_dim).
/// </summary>
public sealed class Rope
{
    private readonly int _half;
    private readonly float[] _cos, _sin; // [maxPos, half]

    public Rope(int headDim, float theta, int maxPositions)
    {
        _half = headDim / 2;
        _cos = new float[maxPositions * _half];
        _sin = new float[maxPositions * _half];
        for (int i = 0; i < _half; i++)
        {
            // inv_freq is float32 in the reference; keep the same rounding of the frequency.
            float invFreq = (float)(1.0 / Math.Pow(theta, 2.0 * i / headDim));
            for (int p = 0; p < maxPositions; p++)
            {
                float angle = p * invFreq;
                _cos[p * _half + i] = (float)Math.Cos(angle);
                _sin[p * _half + i] = (float)Math.Sin(angle);
            }
        }
    }

    /// <summary>Rotates every head of <paramref name="vec"/> (heads * head_dim values) in place.</summary>
    public void Apply(Span<float> vec, int heads, int pos)
    {
        var cos = _cos.AsSpan(pos * _half, _half);
        var sin = _sin.AsSpan(pos * _half, _half);
        for (int h = 0; h < heads; h++)
        {
            var head = vec.Slice(h * 2 * _half, 2 * _half);
            for (int i = 0; i < _half; i++)
            {
                float a = head[i], b = head[i + _half];
                head[i] = a * cos[i] - b * sin[i];
                head[i + _half] = b * cos[i] + a * sin[i];
            }
        }
    }
}
