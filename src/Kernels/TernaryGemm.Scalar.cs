namespace BitMoe.Kernels;

public static unsafe partial class TernaryGemm
{
    /// <summary>Four tokens without intrinsics: four scalar gemv rows (the reference).</summary>
    internal static void Rows4Scalar(byte* w, int stride, sbyte* xs, int* sums, int* y, int ldy, int start, int end)
    {
        for (int t = 0; t < TokenTile; t++)
            TernaryGemv.RowsScalar(w, stride, xs + 4L * stride * t, sums[t], y + (long)ldy * t, start, end);
    }
}
