namespace BitMoe.Kernels;

/// <summary>Element types of unquantized weight rows that the float kernels read directly from a memory map.</summary>
public enum DType
{
    F32,
    F16,
    BF16,
}

public static class DTypeInfo
{
    public static int Size(DType t) => t == DType.F32 ? 4 : 2;
}
