using BitMoe.Kernels;

namespace BitMoe.Tests.Kernels;

/// <summary>A fact that is skipped (not passed) when this CPU lacks the instruction set it exercises.</summary>
public sealed class IsaFactAttribute : FactAttribute
{
    public IsaFactAttribute(KernelIsa isa)
    {
        if (!Isa.IsSupported(isa)) Skip = $"{isa} is not supported on this CPU";
    }
}

/// <summary>A fact that is skipped when this CPU has no vector path for the base-3 layout (AVX-512 VBMI).</summary>
public sealed class Base3FactAttribute : FactAttribute
{
    public Base3FactAttribute()
    {
        if (!Base3Gemv.IsSupported(KernelIsa.Avx512)) Skip = "the base-3 layout's vector path needs AVX-512 VBMI";
    }
}
