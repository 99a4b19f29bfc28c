using BitMoe.Engine.Conversion;
using BitMoe.Quant.Formats;

namespace BitMoe.Tests.Quant;

/// <summary>
/// A packed model copies its float matrices out of the file mapping at load and releases the mapped pages
/// (<see cref="TensorView.ReleaseMappedPages"/>): the mapping must still read the same bytes afterwards (the embedding of a
/// tied model is read from it), and memory the loader allocated must never be released (that would zero it).
/// </summary>
public unsafe class MappedTensorTests
{
    [Fact]
    public void ReleasedPagesOfAMappedTensorReadTheSameBytesAgain()
    {
        using var f = SafetensorsFile.Open(Path.Combine(Fixtures.Dir("mhmoe_h4_mergeonly_top1_tied_bitnet_f16"), "model.safetensors"));
        foreach (var (name, t) in f.Tensors)
        {
            Assert.True(t.IsFileMapped, name);
            var before = new ReadOnlySpan<byte>(t.Data, checked((int)t.ByteLength)).ToArray();
            t.ReleaseMappedPages();
            Assert.True(before.AsSpan().SequenceEqual(new ReadOnlySpan<byte>(t.Data, checked((int)t.ByteLength))), name);
        }
    }

    [Fact]
    public void GgufFloatTensorsAreMappedAndReadTheSameBytesAfterARelease()
    {
        string dir = Path.Combine(Path.GetTempPath(), "bitmoe-mapped-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try { CheckGguf(Path.Combine(dir, "m.gguf")); }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static void CheckGguf(string path)
    {
        Quantizer.Run(Fixtures.Dir("mhmoe_h4_mergeonly_top1_tied_bitnet_f16"), path, new QuantizeOptions(OutputType.Tq2));
        using var f = GgufFile.Open(path, BitMoe.Quant.TernaryGguf.Types);
        int checkedTensors = 0;
        foreach (var g in f.Tensors.Values.Where(g => g.TypeId is 0 or 1 or 30))
        {
            var t = g.ToTensorView();
            Assert.True(t.IsFileMapped, g.Name);
            var before = new ReadOnlySpan<byte>(t.Data, checked((int)t.ByteLength)).ToArray();
            t.ReleaseMappedPages();
            Assert.True(before.AsSpan().SequenceEqual(new ReadOnlySpan<byte>(t.Data, checked((int)t.ByteLength))), g.Name);
            checkedTensors++;
        }
        Assert.True(checkedTensors > 0, $"{path} has no float tensor");
    }

    [Fact]
    public void MemoryTheLoaderAllocatedIsNeverReleased()
    {
        // 3 whole 4 KiB pages of anonymous memory: MADV_DONTNEED would hand them back as zeros
        const int bytes = 4 * 4096;
        var block = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(bytes, 4096);
        try
        {
            new Span<byte>(block, bytes).Fill(0x5A);
            var t = new TensorView { Name = "copy", File = "memory", TypeName = "F16", Shape = [bytes / 2], Data = block, ByteLength = bytes };
            Assert.False(t.IsFileMapped);
            t.ReleaseMappedPages();
            Assert.Equal(-1, new ReadOnlySpan<byte>(block, bytes).IndexOfAnyExcept((byte)0x5A));
        }
        finally { System.Runtime.InteropServices.NativeMemory.AlignedFree(block); }
    }
}
