namespace BitMoe.Bench;

/// <summary>A weight matrix of a real model: [rows, cols], rows = output features.</summary>
/// <param name="Model">Short model name: small, bl (bitnet_b1_58-large), mix (mixtral-small).</param>
public sealed record MatrixShape(string Model, string Role, int Rows, int Cols)
{
    public override string ToString() => $"{Model} {Role} {Rows}x{Cols}";
}

/// <summary>The matrix shapes the benchmarks run: the models of docs/performance.md.</summary>
public static class Shapes
{
    /// <summary>
    /// The small shipped-model shape (no trained model is in models/ yet: hidden 256, experts of width 128 with
    /// hidden 384, the MH-MoE sub-token width of h = 2).
    /// </summary>
    public static readonly MatrixShape[] Small =
    [
        new("small", "attn", 256, 256),
        new("small", "exp_up", 384, 128),
        new("small", "exp_down", 128, 384),
    ];

    /// <summary>bitnet_b1_58-large: hidden 1536, FFN 4096.</summary>
    public static readonly MatrixShape[] BitNetLarge =
    [
        new("bl", "attn", 1536, 1536),
        new("bl", "ffn_up", 4096, 1536),
        new("bl", "ffn_down", 1536, 4096),
    ];

    /// <summary>mixtral-small (random-model preset): hidden 1024; attention and the experts' gate/up/down are all 1024x1024.</summary>
    public static readonly MatrixShape[] MixtralSmall =
    [
        new("mix", "attn/exp", 1024, 1024),
    ];

    public static IEnumerable<MatrixShape> Ternary => [.. Small, .. BitNetLarge, .. MixtralSmall];

    /// <summary>Float matrices: the lm_heads (F16 in the GGUF files) and one hidden x hidden matrix.</summary>
    public static IEnumerable<MatrixShape> Float =>
    [
        new("mix", "lm_head", 32000, 1024),
        new("bl", "lm_head", 32002, 1536),
        new("bl", "attn", 1536, 1536),
    ];
}
