namespace BitMoe.Engine.Layers;

/// <summary>The three ways to run one checkpoint (model-spec.md section 2).</summary>
public enum ExecutionMode
{
    /// <summary>Ordinary float linear layers, no quantization.</summary>
    Fp,
    /// <summary>BitLinear formulas evaluated on unpacked ternary weights and int8 activations.</summary>
    FakeQuant,
    /// <summary>Ternary weights packed in bits, integer SIMD dot products.</summary>
    Packed,
}
