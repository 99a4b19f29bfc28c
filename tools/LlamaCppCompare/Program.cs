using BitMoe.LlamaCppCompare;
using BitMoe.Quant;

// llamacpp-compare: BitMoe next to llama.cpp (through LLamaSharp) on the same GGUF file.
const string usage = "usage: llamacpp-compare perplexity|bench|alternate [options]   (--help for details)";
if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
{
    Console.WriteLine("llamacpp-compare: BitMoe next to llama.cpp (LLamaSharp, CPU) on the same llama-architecture GGUF file.\n");
    Console.WriteLine(PerplexityCompare.Usage);
    Console.WriteLine(Bench.Usage);
    Console.WriteLine(Alternate.Usage);
    return 0;
}

try
{
    var flags = new HashSet<string> { "--verbose", "-v", "--kl", "--kv-f32" };
    var options = new Args(args.Skip(1), flags);
    LlamaNative.Init(verbose: options.Flag("--verbose", "-v"));
    return args[0] switch
    {
        "perplexity" => PerplexityCompare.Run(options),
        "bench" => Bench.Run(options),
        "alternate" => Alternate.Run(options),
        _ => throw new UsageException($"unknown command '{args[0]}'\n{usage}"),
    };
}
catch (Exception e) when (e is UsageException or BitMoeException or LlamaLoadException or IOException)
{
    Console.Out.Flush();
    Console.Error.WriteLine($"llamacpp-compare: error: {e.Message}");
    return 1;
}
