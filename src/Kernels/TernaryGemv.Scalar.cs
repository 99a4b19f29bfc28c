namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemv
{
    /// <summary>The kernel layout without intrinsics: the reference the vector paths must equal.</summary>
    internal static void RowsScalar(byte* w, int stride, sbyte* xs, int sum, int* y, int start, int end)
    {
        sbyte* x0 = xs, x1 = xs + stride, x2 = xs + 2 * stride, x3 = xs + 3 * stride;
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            int acc = 0;
            for (int j = 0; j < stride; j++)
            {
                int q = row[j];
                acc += (q & 3) * x0[j] + ((q >> 2) & 3) * x1[j] + ((q >> 4) & 3) * x2[j] + (q >> 6) * x3[j];
            }
            y[r] = acc - sum;
        }
    }
}
