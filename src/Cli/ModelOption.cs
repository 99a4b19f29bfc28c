using System.CommandLine;
using BitMoe.Quant;

namespace BitMoe.Cli;

/// <summary>The -m option of every command that runs a model, and where the model folder comes from.</summary>
public static class ModelOption
{
    /// <summary>
    /// The folder used when -m is absent. No model ships with bitmoe yet, so there is none and -m is required;
    /// setting this to the shipped model's folder makes -m optional for every command that uses <see cref="Create"/>.
    /// </summary>
    public static string? DefaultPath => null;

    public static Option<string?> Create() => new("--model", "-m")
    {
        Description = DefaultPath == null ? "checkpoint folder" : $"checkpoint folder (default: {DefaultPath})",
        Required = DefaultPath == null,
    };

    /// <summary>The folder given with -m, else <see cref="DefaultPath"/>.</summary>
    public static string Resolve(ParseResult result, Option<string?> option) =>
        result.GetValue(option) ?? DefaultPath ?? throw new BitMoeException("-m: no model folder given");
}
