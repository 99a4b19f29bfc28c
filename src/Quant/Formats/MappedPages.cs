using System.Runtime.InteropServices;

namespace BitMoe.Quant.Formats;

/// <summary>The one system call <see cref="TensorView.ReleaseMappedPages"/> needs.</summary>
internal static unsafe partial class MappedPages
{
    public const int DontNeed = 4; // MADV_DONTNEED

    [LibraryImport("libc", SetLastError = false)]
    internal static partial int madvise(void* address, nuint length, int advice);
}
