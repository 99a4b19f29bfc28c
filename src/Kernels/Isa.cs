using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

/// <summary>The instruction sets the integer kernels are written for, one source file each.</summary>
public enum KernelIsa
{
    /// <summary>Plain C#, no intrinsics: the reference every other path must equal bit for bit.</summary>
    Scalar,
    /// <summary>256-bit vpmaddubsw + vpmaddwd.</summary>
    Avx2,
    /// <summary>256-bit vpdpbusd (AVX-VNNI, VEX encoded).</summary>
    AvxVnni,
    /// <summary>512-bit vpmaddubsw + vpmaddwd (AVX-512BW).</summary>
    Avx512,
    /// <summary>ARM64 AdvSimd with the sdot extension (ARMv8.2 DotProd).</summary>
    Neon,
}

/// <summary>
/// Which instruction set the kernels run: the best one the CPU offers, or the one forced through
/// <see cref="Current"/> or the environment variable BITMOE_ISA (scalar, avx2, avxvnni, avx512, neon;
/// "auto" or empty = detect). Forcing an ISA the CPU lacks is an error, never a silent fallback.
/// </summary>
public static class Isa
{
    public const string EnvironmentVariable = "BITMOE_ISA";

    private static KernelIsa? _current;
    private static bool _forced;

    /// <summary>
    /// The ISA the dispatching matrix-vector kernels use (and, when forced, every kernel). Setting an unsupported one
    /// throws <see cref="NotSupportedException"/>.
    /// </summary>
    public static KernelIsa Current
    {
        get => _current ??= FromEnvironment();
        set
        {
            Require(value, nameof(Current));
            _current = value;
            _forced = true;
        }
    }

    /// <summary>
    /// The ISA of the batched (matrix-matrix) kernels: <see cref="Current"/> when forced, else <see cref="BestGemm"/>.
    /// The two differ because decode streams weights from memory while a batch is bound by arithmetic.
    /// </summary>
    public static KernelIsa CurrentGemm => Current == Best && !_forced ? BestGemm : Current;

    /// <summary>Forget a forced choice: the next read of <see cref="Current"/> detects (or reads BITMOE_ISA) again.</summary>
    public static void Reset() { _current = null; _forced = false; }

    public static bool IsSupported(KernelIsa isa) => isa switch
    {
        KernelIsa.Scalar => true,
        KernelIsa.Avx2 => Avx2.IsSupported,
        KernelIsa.AvxVnni => AvxVnni.IsSupported,
        KernelIsa.Avx512 => Avx512BW.IsSupported,
        KernelIsa.Neon => AdvSimd.Arm64.IsSupported && Dp.IsSupported,
        _ => false,
    };

    /// <summary>Every ISA this CPU runs, best first.</summary>
    public static IReadOnlyList<KernelIsa> Supported { get; } = Preference().Where(IsSupported).ToArray();

    /// <summary>The fastest supported ISA (measured order: 256-bit VNNI, 512-bit maddubs, AVX2).</summary>
    public static KernelIsa Best => Supported[0];

    /// <summary>
    /// The fastest supported ISA for batches. Measured on an AMD Zen 5 (pp512, bitnet-large shape, one thread): the
    /// 512-bit vpmaddubsw kernel 150 GMAC/s, 256-bit vpdpbusd 127, AVX2 125 - .NET exposes vpdpbusd only at 256 bits.
    /// </summary>
    public static KernelIsa BestGemm { get; } = new[] { KernelIsa.Avx512, KernelIsa.AvxVnni, KernelIsa.Avx2, KernelIsa.Neon, KernelIsa.Scalar }
        .First(IsSupported);

    private static IEnumerable<KernelIsa> Preference()
    {
        yield return KernelIsa.AvxVnni;
        yield return KernelIsa.Avx512;
        yield return KernelIsa.Avx2;
        yield return KernelIsa.Neon;
        yield return KernelIsa.Scalar;
    }

    /// <summary>Parses a BITMOE_ISA value; null or "auto" means detect.</summary>
    public static KernelIsa? Parse(string? text, string source)
    {
        if (string.IsNullOrWhiteSpace(text) || text.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)) return null;
        if (Enum.TryParse<KernelIsa>(text.Trim(), ignoreCase: true, out var isa) && Enum.IsDefined(isa)) return isa;
        throw new NotSupportedException(
            $"{source} = '{text}' is not an instruction set; expected one of auto, {string.Join(", ", Enum.GetNames<KernelIsa>().Select(n => n.ToLowerInvariant()))}");
    }

    private static KernelIsa FromEnvironment()
    {
        var forced = Parse(Environment.GetEnvironmentVariable(EnvironmentVariable), EnvironmentVariable);
        if (forced is not { } isa) return Best;
        Require(isa, EnvironmentVariable);
        _forced = true;
        return isa;
    }

    /// <summary>Throws a clear error when <paramref name="isa"/> cannot run on this CPU.</summary>
    public static void Require(KernelIsa isa, string source = "ISA")
    {
        if (!IsSupported(isa))
            throw new NotSupportedException(
                $"{source} = {isa}: this CPU does not support it (supported here: {string.Join(", ", Supported)})");
    }
}
