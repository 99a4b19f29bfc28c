using System.Runtime.InteropServices;

namespace BitMoe.Kernels;

/// <summary>
/// Linux <c>madvise</c> for the engine's two uses: asking for 2 MiB pages (<see cref="HugePageArena"/>) and dropping a
/// read-only file mapping's pages from the process (a tensor copied elsewhere at load). Advice only: elsewhere
/// than Linux, and when the kernel refuses, nothing happens.
/// </summary>
public static unsafe partial class MemoryAdvice
{
    private const int DontNeed = 4; // MADV_DONTNEED
    private const int HugePage = 14; // MADV_HUGEPAGE

    /// <summary>Asks for transparent huge pages over [start, start + length).</summary>
    public static void UseHugePages(void* start, nuint length)
    {
        if (OperatingSystem.IsLinux()) _ = madvise(start, length, HugePage);
    }

    /// <summary>
    /// Drops the pages of [start, start + length) from the page tables. Only for a read-only file mapping: the pages
    /// come back from the file on the next read. On anonymous memory it would zero them.
    /// </summary>
    public static void DropMappedPages(void* start, nuint length)
    {
        if (OperatingSystem.IsLinux()) _ = madvise(start, length, DontNeed);
    }

    [LibraryImport("libc", SetLastError = false)]
    private static partial int madvise(void* address, nuint length, int advice);
}
