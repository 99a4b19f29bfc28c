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
