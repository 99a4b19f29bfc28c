// BitMoe.KernelCheck: checks every integer kernel path this CPU can run against the scalar reference, bit for bit,
// and the float kernels (FloatDot, StridedRows) on the widest vector the JIT accelerates in this process (CI runs it
// again with DOTNET_EnableAVX512=0 and DOTNET_EnableAVX2=0 for the 256- and 128-bit paths).
//   BitMoe.KernelCheck [--require ISA[,ISA...]]... [--require-vector 512|256|128|scalar]
// Prints what ran and, as its last line, "N passed, M failed". Exit code 0 when everything matched, 1 on any
// mismatch, 2 on bad arguments, when a required ISA is not supported here (so CI cannot skip NEON silently) or
// when the float kernels would not run on the required vector width (so a runtime knob that stopped working,
// like .NET 10 ignoring DOTNET_EnableAVX512F, cannot quietly check the same path twice).
using System.Diagnostics;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using BitMoe.Kernels;
using BitMoe.KernelCheck;

var required = new List<KernelIsa>();
string? requiredVector = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--require" when i + 1 < args.Length:
            foreach (var name in args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!Enum.TryParse<KernelIsa>(name, ignoreCase: true, out var isa) || !Enum.IsDefined(isa))
                    return Fail($"--require {name}: not an instruction set (expected {IsaNames()})");
                required.Add(isa);
            }
            break;
        case "--require-vector" when i + 1 < args.Length:
            requiredVector = args[++i].ToLowerInvariant() switch
            {
                "512" => "Vector512", "256" => "Vector256", "128" => "Vector128", "scalar" => "scalar",
                _ => null,
            };
            if (requiredVector == null) return Fail($"--require-vector {args[i]}: expected 512, 256, 128 or scalar");
            break;
        case "-h" or "--help":
            Console.WriteLine($"usage: BitMoe.KernelCheck [--require ISA[,ISA...]] [--require-vector 512|256|128|scalar]   (ISA: {IsaNames()})");
            return 0;
        case "--require" or "--require-vector":
            return Fail($"{args[i]} needs a value");
        default:
            return Fail($"unknown argument '{args[i]}' (try --help)");
    }
}

Console.WriteLine($"BitMoe kernel check: {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.RuntimeIdentifier}, process {RuntimeInformation.ProcessArchitecture}");
Console.WriteLine($"ISAs supported here: {string.Join(", ", Isa.Supported)} (best: {Isa.Best}; dispatch: {Isa.Current})");
Console.WriteLine($"Float kernels: {FloatChecks.VectorPath} (Vector512/256/128.IsHardwareAccelerated: " +
                  $"{Vector512.IsHardwareAccelerated}/{Vector256.IsHardwareAccelerated}/{Vector128.IsHardwareAccelerated})");
if (requiredVector != null && requiredVector != FloatChecks.VectorPath)
    return Fail($"--require-vector: the float kernels run on {FloatChecks.VectorPath} here, not {requiredVector} " +
                "(x86: DOTNET_EnableAVX512=0 gives Vector256, DOTNET_EnableAVX2=0 gives Vector128)");
foreach (var isa in required)
    if (!Isa.IsSupported(isa))
        return Fail($"--require {isa.ToString().ToLowerInvariant()}: this CPU does not support {isa} (supported here: {string.Join(", ", Isa.Supported)})" +
                    (isa == KernelIsa.Neon ? "; under qemu-aarch64 pass -cpu max (NEON needs AdvSimd and the Dp/sdot extension)" : ""));

var total = new CheckLog();
var clock = Stopwatch.StartNew();

void Run(string name, Action<CheckLog> check)
{
    var log = new CheckLog();
    var t = Stopwatch.StartNew();
    try { check(log); }
    catch (Exception e) { log.Check(false, $"{name}: threw {e.GetType().Name}: {e.Message}"); }
    Console.WriteLine($"  {name,-40} {log.Passed,5} passed, {log.Failed} failed  ({t.Elapsed.TotalSeconds:F1} s)");
    foreach (var f in log.Failures.Take(10)) Console.WriteLine($"    FAIL {f}");
    if (log.Failed > 10) Console.WriteLine($"    ... and {log.Failed - 10} more");
    total.Merge(log);
}

Run("tq2_0 / tq1_0 pack-unpack identity", log =>
{
    foreach (int n in TestData.LayoutLengths) { KernelChecks.Tq2RoundTrip(n, log); KernelChecks.Tq1RoundTrip(n, log); }
});
Run("kernel layout pack-unpack identity", KernelChecks.KernelLayoutRoundTrip);
Run("scalar gemv = int8 dot", KernelChecks.ScalarGemvIsExact);
Run("repacked file layouts = file-layout gemv", KernelChecks.RepackFromFileLayouts);
Run($"Int8Dot (Vector<sbyte>: {Vector<sbyte>.Count} lanes)", log =>
{
    foreach (int n in TestData.DotLengths) KernelChecks.Int8DotMatchesScalar(n, log);
});
string vec = FloatChecks.VectorPath;
Run($"F16 widening exact ({vec})", FloatChecks.F16WideningIsExact);
Run($"BF16 widening exact ({vec})", FloatChecks.BF16WideningIsExact);
Run($"F16/BF16 dot = F32 of widened ({vec})", FloatChecks.HalvesEqualWidenedF32);
Run($"FloatDot ~ scalar reference ({vec})", FloatChecks.DotsMatchScalar);
Run("TryScaleForF16 limits", FloatChecks.ScaleForF16Limits);
Run($"IndexOfNonFiniteF16 ({vec})", FloatChecks.IndexOfNonFiniteF16);
Run($"StridedRows = references ({vec})", FloatChecks.StridedRowsMatch);
foreach (var isa in Isa.Supported)
{
    Run($"{isa} gemv = scalar", log => KernelChecks.GemvMatchesScalar(isa, log));
    Run($"{isa} gemm = scalar", log => KernelChecks.GemmMatchesScalar(isa, log));
}

Console.WriteLine($"ISAs checked: {string.Join(", ", Isa.Supported)}; float kernels on {FloatChecks.VectorPath}{(required.Count > 0 ? $" (required: {string.Join(", ", required)})" : "")}; {clock.Elapsed.TotalSeconds:F1} s");
Console.WriteLine($"{total.Passed} passed, {total.Failed} failed");
return total.Failed == 0 ? 0 : 1;

static int Fail(string message)
{
    Console.Error.WriteLine($"BitMoe.KernelCheck: error: {message}");
    return 2;
}

static string IsaNames() => string.Join(", ", Enum.GetNames<KernelIsa>().Select(n => n.ToLowerInvariant()));
