using System.CommandLine;
using BitMoe.Quant;

namespace BitMoe.Cli;

/// <summary>The -m option of every command that runs a model, and where the model folder comes from.</summary>
public static class ModelOption
{
    /// <summary>The shipped model (models/ShippedModel/), whose GGUF file the build copies next to the executable.</summary>
    public const string ShippedModel = "bitmoe-mh2-brown-kjv";

    /// <summary>
    /// The model used when -m is absent: the shipped model's tq2_0 GGUF beside the executable
    /// (BitMoe.Cli.csproj copies models/*/*.gguf into the build output). Null when it is not there,
    /// and then -m is required.
    /// </summary>
    public static string? DefaultPath
    {
        get
        {
            string path = Path.Combine(AppContext.BaseDirectory, "models", $"{ShippedModel}-tq2_0.gguf");
            return File.Exists(path) ? path : null;
        }
    }

    public static Option<string?> Create() => new("--model", "-m")
    {
        Description = DefaultPath == null ? "model: checkpoint folder or .gguf file" : $"model: checkpoint folder or .gguf file (default: the shipped {ShippedModel})",
        Required = DefaultPath == null,
    };

    /// <summary>The folder given with -m, else <see cref="DefaultPath"/>.</summary>
    public static string Resolve(ParseResult result, Option<string?> option) =>
        result.GetValue(option) ?? DefaultPath ?? throw new BitMoeException("-m: no model given");
}
