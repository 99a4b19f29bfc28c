using BitMoe.Kernels;
using BitMoe.Quant.Formats;

namespace BitMoe.Engine.Weights;

/// <summary>
/// A float weight matrix of a packed model (the F16 lm_head above all: 98 MB of the 268 MB bitnet-large reads per
/// decoded token, 65.5 of mixtral-small's 97) copied at load from the file mapping into the model's
/// <see cref="HugePageArena"/>, where the ternary matrices already are. Decoding streams it whole every token;
/// through the mapping's 4 KiB pages that is a TLB miss every 4 KiB, whose page walk goes to memory because the
/// rest of the token's weights have pushed the page tables out of the caches. Timed inside the decode, token by token
/// in turns (docs/performance.md, change 19): the lm_head took 3.78 / 4.59 ms from the mapping and 3.06 / 3.03 ms
/// from 2 MiB pages on bitnet-large, 2.58 / 2.49 and 1.95 / 1.89 ms on mixtral-small. The mapping's pages of the
/// tensor are released after the copy, so the resident memory does not count the matrix twice. The values are the
/// same bytes, so the results are unchanged.
/// </summary>
internal static unsafe class HugePageCopy
{
    public static TensorView Of(HugePageArena arena, TensorView mapped)
    {
        byte* copy = arena.Allocate(mapped.ByteLength, clear: false);
        Buffer.MemoryCopy(mapped.Data, copy, mapped.ByteLength, mapped.ByteLength);
        mapped.ReleaseMappedPages();
        return new TensorView
        {
            Name = mapped.Name, File = mapped.File, TypeName = mapped.TypeName, Shape = mapped.Shape,
            Data = copy, ByteLength = mapped.ByteLength, IsFileMapped = false,
        };
    }
}
