using BitMoe.Kernels;
using BitMoe.Engine.Weights;
using BitMoe.Engine.Layers;
using BitMoe.Engine.Tokenization;
using BitMoe.Quant;
using BitMoe.Quant.Formats;
using BitMoe.Engine.Gguf;

namespace BitMoe.Engine;

/// <summary>A model ready to run: the forward pass with its cache, and the tokenizer that goes with it.</summary>
public sealed class LoadedModel(Transformer transformer, TextTokenizer tokenizer, string path) : IDisposable
{
    public Transformer Transformer { get; } = transformer;
    public TextTokenizer Tokenizer { get; } = tokenizer;
    public string Path { get; } = path;
    public ModelConfig Config => Transformer.Config;

    /// <summary>End-of-sequence token: config's eos_token_id, else the tokenizer's &lt;|endoftext|&gt; or &lt;/s&gt;.</summary>
    public int? EosId => Config.EosTokenId
        ?? Tokenizer.EndOfTextId;

    public void Dispose() => Transformer.Dispose();
}

public static class ModelLoader
{
    /// <summary>
    /// Opens a model: a HuggingFace checkpoint folder (config.json, model.safetensors or shards,
    /// tokenizer.json) or a GGUF file (config, tokenizer and tensors in one file). Validates the config
    /// and every tensor's shape, and builds the forward pass for <paramref name="mode"/>; null picks
    /// packed for a GGUF file with ternary tensors and fp otherwise.
    /// </summary>
    /// <param name="contextLength">Positions the KV cache holds; null means max_position_embeddings.</param>
    /// <param name="maxBatch">Tokens per batched forward pass (<see cref="Transformer.MaxBatch"/>).</param>
    /// <param name="kvCacheType">Element type of the KV cache: F32 (exact against the reference) or F16 (<see cref="KvCache"/>).</param>
    public static LoadedModel Load(string path, ExecutionMode? mode, int? contextLength = null, int threads = 1,
        int maxBatch = Transformer.DefaultMaxBatch, DType kvCacheType = DType.F32)
    {
        var options = new BuildOptions(contextLength, threads, maxBatch, kvCacheType);
        if (Directory.Exists(path)) return LoadFolder(path, mode ?? ExecutionMode.Fp, options);
        if (File.Exists(path)) return LoadGguf(path, mode, options);
        throw new BitMoeException($"{path}: model path does not exist");
    }

    /// <summary>What the forward pass is built with besides the weights.</summary>
    private readonly record struct BuildOptions(int? ContextLength, int Threads, int MaxBatch, DType KvCacheType);

    private static LoadedModel LoadFolder(string path, ExecutionMode mode, BuildOptions options)
    {
        var config = ModelConfig.Load(System.IO.Path.Combine(path, "config.json"));
        var tokenizer = TextTokenizer.Load(System.IO.Path.Combine(path, "tokenizer.json"));
        CheckFits(path, config, tokenizer, options.ContextLength);
        var weights = ModelWeights.OpenFolder(path);
        return Build(path, weights, config, tokenizer, mode, options);
    }

    private static LoadedModel LoadGguf(string path, ExecutionMode? mode, BuildOptions options)
    {
        var file = GgufFile.Open(path, TernaryGguf.Types);
        ModelWeights weights;
        ModelConfig config;
        TextTokenizer tokenizer;
        try
        {
            config = GgufModelMetadata.ReadConfig(file, out string arch);
            tokenizer = GgufModelMetadata.ReadTokenizer(file);
            CheckFits(path, config, tokenizer, options.ContextLength);
            weights = ModelWeights.FromGguf(file, config, arch == "llama", GgufModelMetadata.ReadScales(file));
        }
        catch
        {
            file.Dispose();
            throw;
        }
        var chosen = mode ?? (weights.HasTernary ? ExecutionMode.Packed : ExecutionMode.Fp);
        return Build(path, weights, config, tokenizer, chosen, options);
    }

    private static void CheckFits(string path, ModelConfig config, TextTokenizer tokenizer, int? contextLength)
    {
        if (tokenizer.VocabSize > config.VocabSize)
            throw new BitMoeException($"{path}: the tokenizer has {tokenizer.VocabSize} tokens but vocab_size is {config.VocabSize}");
        if (contextLength > config.MaxPositions)
            throw new BitMoeException($"context length {contextLength} is larger than max_position_embeddings {config.MaxPositions} of {path}");
    }

    private static LoadedModel Build(string path, ModelWeights weights, ModelConfig config, TextTokenizer tokenizer, ExecutionMode mode,
        BuildOptions options)
    {
        try
        {
            var transformer = new Transformer(weights, config, mode, options.ContextLength ?? config.MaxPositions, options.Threads, options.MaxBatch,
                options.KvCacheType);
            return new LoadedModel(transformer, tokenizer, path);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }
}
