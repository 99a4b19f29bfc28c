using BitMoe.Engine;
using BitMoe.Engine.Layers;
using BitMoe.Kernels;

namespace BitMoe.Tests.Engine;

/// <summary>
/// Packed and fake-quant compute the same function: the same int8 activations, an exact integer
/// dot product (packed kernels or sbyte weights), one float division. So their logits are equal,
/// not merely close, on every kernel ISA this machine runs.
/// </summary>
[Collection(IsaCollection.Name)]
public class PackedParityTests
{
    public static TheoryData<string> BitNet => Fixtures.BitNet();

    [Theory, MemberData(nameof(BitNet))]
    public void PackedCheckpointEqualsFakeQuantOnEveryIsa(string fixture)
    {
        var tokens = Reference.Load(fixture).Tokens;
        using var fake = ModelLoader.Load(Fixtures.Dir(fixture), ExecutionMode.FakeQuant, tokens.Length);
        var expected = tokens.Select(t => fake.Transformer.Forward(t).ToArray()).ToArray();
        foreach (var isa in Isa.Supported)
        {
            Isa.Current = isa;
            try
            {
                using var packed = ModelLoader.Load(Fixtures.Dir(fixture), ExecutionMode.Packed, tokens.Length);
                for (int i = 0; i < tokens.Length; i++)
                    Assert.True(expected[i].AsSpan().SequenceEqual(packed.Transformer.Forward(tokens[i])), $"{fixture} on {isa}: logits differ at position {i}");
            }
            finally { Isa.Reset(); }
        }
    }
}

/// <summary>Tests that switch <see cref="Isa.Current"/> (a process-wide setting) run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public class IsaCollection
{
    public const string Name = "ISA switching";
}
