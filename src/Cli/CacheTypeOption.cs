using System.CommandLine;
using BitMoe.Kernels;
using BitMoe.Quant;

namespace BitMoe.Cli;

/// <summary>
/// --cache-type (-ct): the KV cache's element type, as llama.cpp's -ctk / -ctv (one option here for both). f32 keeps
/// attention exact against the PyTorch reference; f16, llama.cpp's default, halves the cache's memory and the bytes
/// each decoded token reads from it.
/// </summary>
public static class CacheTypeOption
{
    public static Option<string> Create() => new("--cache-type", "-ct")
    {
        Description = "KV cache element type: f32 (exact against the reference) | f16 (half the memory and cache reads; llama.cpp's default)",
        DefaultValueFactory = _ => "f32",
    };

    public static DType Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "f32" => DType.F32,
        "f16" => DType.F16,
        _ => throw new BitMoeException($"--cache-type: unknown type '{text}' (expected f32 or f16)"),
    };
}
