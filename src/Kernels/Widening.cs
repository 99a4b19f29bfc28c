using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

// Loaders that widen F32 / F16 / BF16 storage to float32 vectors in registers. The float kernels (FloatDot, StridedRows)
// are written once over a loader type argument, which the JIT specialises, so a loop over halves performs exactly
// the operations of the same loop over the halves widened to F32 (every widening here is exact).

/// <summary>Loads 16, 8, 4 or 1 elements at p, widened to float32.</summary>
internal unsafe interface ILoader
{
    static abstract Vector512<float> Load512(byte* p);
    static abstract Vector256<float> Load256(byte* p);
    static abstract Vector128<float> Load128(byte* p);
    static abstract float Load1(byte* p);
}

internal readonly unsafe struct F32Loader : ILoader
{
    public static Vector512<float> Load512(byte* p) => Vector512.Load((float*)p);
    public static Vector256<float> Load256(byte* p) => Vector256.Load((float*)p);
    public static Vector128<float> Load128(byte* p) => Vector128.Load((float*)p);
    public static float Load1(byte* p) => *(float*)p;
}

/// <summary>
/// IEEE half to single with integer operations (.NET has no vcvtph2ps): the half sign-extended to 32 bits
/// and shifted left by 13 puts its exponent and mantissa where a float keeps them and copies of its sign
/// into bits 28-31; masking keeps bit 31, and multiplying by 2^112 rebiases the exponent (and turns
/// subnormals into normals) exactly, sign included. Infinities and NaNs (exponent 31) would come out as
/// finite values of at least 2^16: fixing them per vector halves the speed, so callers reject such rows
/// once, at load, with <see cref="FloatDot.IndexOfNonFiniteF16"/> (the KV cache clamps what it stores to the finite range instead).
/// </summary>
internal readonly unsafe struct F16Loader : ILoader
{
    private const uint Magic = 0x77800000; // 2^112

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(byte* p) => F16UnbiasedLoader.Load512(p) * Vector512.Create(Magic).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(byte* p) => F16UnbiasedLoader.Load256(p) * Vector256.Create(Magic).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load128(byte* p) => F16UnbiasedLoader.Load128(p) * Vector128.Create(Magic).AsSingle();
    public static float Load1(byte* p) => (float)*(Half*)p;
}

/// <summary>
/// The widening of <see cref="F16Loader"/> without its multiply by 2^112: each lane holds w * 2^-112 exactly. F16Loader
/// multiplies it by 2^112; <see cref="FloatDot.F16Scaled"/> uses it as it is, its input carrying the 2^112.
/// </summary>
internal readonly unsafe struct F16UnbiasedLoader : ILoader
{
    private const float Unbias = 1.925929944387236e-34f; // 2^-112

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(byte* p) =>
        // Avx512F's form lets the JIT fold the load into vpmovsxwd (measured 3% faster than WidenLower here)
        (((Avx512F.IsSupported ? Avx512F.ConvertToVector512Int32(Vector256.Load((short*)p)) : Vector512.WidenLower(Vector256.Load((short*)p).ToVector512Unsafe())) << 13)
         & Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(byte* p) =>
        ((Vector256.WidenLower(Vector128.Load((short*)p).ToVector256Unsafe()) << 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load128(byte* p) =>
        ((Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)p).AsInt16()) << 13) & Vector128.Create(unchecked((int)0x8FFFE000))).AsSingle();
    public static float Load1(byte* p) => (float)*(Half*)p * Unbias; // exact: a power of two, the result at least 2^-136
}

/// <summary>bfloat16 is the upper half of a float32: widening is a 16-bit shift.</summary>
internal readonly unsafe struct BF16Loader : ILoader
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(byte* p) => (Vector512.WidenLower(Vector256.Load((ushort*)p).ToVector512Unsafe()) << 16).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(byte* p) => (Vector256.WidenLower(Vector128.Load((ushort*)p).ToVector256Unsafe()) << 16).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load128(byte* p) => (Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)p).AsUInt16()) << 16).AsSingle();
    public static float Load1(byte* p) => BitConverter.UInt32BitsToSingle((uint)*(ushort*)p << 16);
}
