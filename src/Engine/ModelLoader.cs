using BitMoe.Engine.Weights;
using BitMoe.Engine.Layers;
using BitMoe.Engine.Tokenization;
using BitMoe.Quant;

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
        ?? Tokenizer.TokenId("<|endoftext|>") ?? Tokenizer.TokenId("</s>") ?? Tokenizer.TokenId("<|end_of_text|>");

    public void Dispose() => Transformer.Dispose();
}

public static class ModelLoader
{
    /// <summary>
    /// Opens a HuggingFace checkpoint folder (config.json, model.safetensors or shards, tokenizer.json),
    /// validates the config and every tensor's shape, and builds the forward pass for <paramref name="mode"/>.
    /// </summary>
    /// <param name="contextLength">Positions the KV cache holds; null means max_position_embeddings.</param>
    public static LoadedModel Load(string path, ExecutionMode mode, int? contextLength = null, int threads = 1)
    {
        if (File.Exists(path))
            throw new BitMoeException($"{path}: expected a checkpoint folder (config.json, model.safetensors, tokenizer.json)");
        if (!Directory.Exists(path)) throw new BitMoeException($"{path}: model path does not exist");

        var config = ModelConfig.Load(System.IO.Path.Combine(path, "config.json"));
        var tokenizer = TextTokenizer.Load(System.IO.Path.Combine(path, "tokenizer.json"));
        if (tokenizer.VocabSize > config.VocabSize)
            throw new BitMoeException($"{path}: tokenizer.json has {tokenizer.VocabSize} tokens but config.json vocab_size is {config.VocabSize}");
        int ctx = contextLength ?? config.MaxPositions;
        if (ctx > config.MaxPositions)
            throw new BitMoeException($"context length {ctx} is larger than max_position_embeddings {config.MaxPositions} of {path}");

        var weights = ModelWeights.OpenFolder(path);
        try
        {
            return new LoadedModel(new Transformer(weights, config, mode, ctx, threads), tokenizer, path);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }
}
