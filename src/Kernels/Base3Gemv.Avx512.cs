using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

public static unsafe partial class Base3Gemv
{
    /// <summary>
    /// The five code tables in ten registers (code n of patterns 0..63 and 64..127). Code n of 64 bytes: one vpermi2b on
    /// the bytes' low seven bits (the eighth is ignored), then 2 - c where the eighth bit is set (one vpblendmb).
    /// </summary>
    internal readonly struct Tables
    {
        private readonly Vector512<byte> _a0, _a1, _b0, _b1, _c0, _c1, _d0, _d1, _e0, _e1;

        private Tables(ReadOnlySpan<byte> t)
        {
            _a0 = Vector512.Create(t[..64]); _a1 = Vector512.Create(t[64..128]);
            _b0 = Vector512.Create(t[128..192]); _b1 = Vector512.Create(t[192..256]);
            _c0 = Vector512.Create(t[256..320]); _c1 = Vector512.Create(t[320..384]);
            _d0 = Vector512.Create(t[384..448]); _d1 = Vector512.Create(t[448..512]);
            _e0 = Vector512.Create(t[512..576]); _e1 = Vector512.Create(t[576..640]);
        }

        public static Tables Load() => new(Base3Layout.Codes);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<byte> Code(Vector512<byte> lo, Vector512<byte> hi, Vector512<byte> v)
        {
            var c = Avx512Vbmi.PermuteVar64x8x2(lo, v, hi);
            return Avx512BW.BlendVariable(c, Avx512BW.Subtract(Vector512.Create((byte)2), c), v);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)] public Vector512<byte> Code0(Vector512<byte> v) => Code(_a0, _a1, v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public Vector512<byte> Code1(Vector512<byte> v) => Code(_b0, _b1, v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public Vector512<byte> Code2(Vector512<byte> v) => Code(_c0, _c1, v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public Vector512<byte> Code3(Vector512<byte> v) => Code(_d0, _d1, v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public Vector512<byte> Code4(Vector512<byte> v) => Code(_e0, _e1, v);

        public Vector512<byte> Decode(Vector512<byte> v, int n) => n switch
        {
            0 => Code0(v), 1 => Code1(v), 2 => Code2(v), 3 => Code3(v), _ => Code4(v),
        };
    }

    /// <summary>The first <paramref name="len"/> (&lt; 64) bytes at <paramref name="p"/>, zero above; reads no byte past them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<byte> LoadShort(byte* p, int len) => Avx512BW.MaskLoad(p, FirstLanes(len), Vector512<byte>.Zero);

    private static Vector512<byte> FirstLanes(int len) =>
        Vector512.LessThan(Vector512<byte>.Indices, Vector512.Create((byte)len));

    /// <summary>
    /// A 64-byte chunk per step: five codes (<see cref="Tables"/>) times the five runs of 64 activations (vpmaddubsw), summed
    /// in int16 for up to 12 chunks (|sum| &lt;= 12 * 5 * 512 = 30720), then widened (vpmaddwd by ones). The short last chunk
    /// of L bytes: the same on masked loads, its five activation runs loaded once per call.
    /// </summary>
    internal static void RowsAvx512(byte* w, int cols, sbyte* x, int sum, int* y, int start, int end)
    {
        int stride = Base3Layout.RowStride(cols), full = stride / 64 * 64, len = stride - full;
        var t = Tables.Load();
        var ones = Vector512.Create((short)1);
        Vector512<sbyte> u0 = default, u1 = default, u2 = default, u3 = default, u4 = default;
        if (len > 0)
        {
            sbyte* xt = x + 5 * full;
            u0 = LoadShort((byte*)xt, len).AsSByte(); u1 = LoadShort((byte*)xt + len, len).AsSByte();
            u2 = LoadShort((byte*)xt + 2 * len, len).AsSByte(); u3 = LoadShort((byte*)xt + 3 * len, len).AsSByte();
            u4 = LoadShort((byte*)xt + 4 * len, len).AsSByte();
        }
        for (int r = start; r < end; r++)
        {
            byte* row = w + (long)r * stride;
            var acc = Vector512<int>.Zero;
            int p = 0;
            while (p < full)
            {
                int stop = Math.Min(full, p + 12 * 64);
                var s = Vector512<short>.Zero;
                for (; p < stop; p += 64)
                {
                    var v = Vector512.Load(row + p);
                    sbyte* xp = x + 5 * p;
                    var s01 = Avx512BW.MultiplyAddAdjacent(t.Code0(v), Vector512.Load(xp)) + Avx512BW.MultiplyAddAdjacent(t.Code1(v), Vector512.Load(xp + 64));
                    var s23 = Avx512BW.MultiplyAddAdjacent(t.Code2(v), Vector512.Load(xp + 128)) + Avx512BW.MultiplyAddAdjacent(t.Code3(v), Vector512.Load(xp + 192));
                    s += s01 + s23 + Avx512BW.MultiplyAddAdjacent(t.Code4(v), Vector512.Load(xp + 256));
                }
                acc += Avx512BW.MultiplyAddAdjacent(s, ones);
            }
            if (len > 0)
            {
                var v = LoadShort(row + full, len);
                var s = Avx512BW.MultiplyAddAdjacent(t.Code0(v), u0) + Avx512BW.MultiplyAddAdjacent(t.Code1(v), u1)
                    + Avx512BW.MultiplyAddAdjacent(t.Code2(v), u2) + Avx512BW.MultiplyAddAdjacent(t.Code3(v), u3)
                    + Avx512BW.MultiplyAddAdjacent(t.Code4(v), u4);
                acc += Avx512BW.MultiplyAddAdjacent(s, ones);
            }
            y[r] = Vector512.Sum(acc) - sum;
        }
    }
}
