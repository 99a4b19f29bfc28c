using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using BitMoe.Engine.Gguf;
using BitMoe.Engine.Tokenization;
using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Engine.Conversion;

/// <summary>
/// Writes a checkpoint folder of the spec's format with random weights for a given config: the
/// way to reproduce speed figures on model shapes nobody has trained. The tokenizer is a valid
/// byte-level BPE of the config's vocabulary size, with synthetic merges.
/// </summary>
public static class RandomModel
{
    /// <summary>Named shapes used in docs/performance.md.</summary>
    public static readonly IReadOnlyDictionary<string, string> Presets = new Dictionary<string, string>
    {
        // bitnet_b1_58-large: Llama layout, 24 layers, hidden 1536, FFN 4096, vocabulary 32002.
        ["bitnet-large"] = """{"model_type":"mhmoe","vocab_size":32002,"hidden_size":1536,"num_hidden_layers":24,"num_attention_heads":16,"intermediate_size":4096,"max_position_embeddings":2048,"quantization_config":{"quant_method":"bitnet"}}""",
        // Mixtral-style: 12 layers, hidden 1024, 8 experts top-2, expert FFN 1024, vocabulary 32000.
        ["mixtral-small"] = """{"model_type":"mhmoe","vocab_size":32000,"hidden_size":1024,"num_hidden_layers":12,"num_attention_heads":16,"num_experts":8,"num_experts_per_tok":2,"moe_intermediate_size":1024,"max_position_embeddings":2048,"quantization_config":{"quant_method":"bitnet"}}""",
        // MH-MoE h = 2 with head and merge layers, same width and depth as mixtral-small.
        ["mhmoe-h2"] = """{"model_type":"mhmoe","vocab_size":32000,"hidden_size":1024,"num_hidden_layers":12,"num_attention_heads":16,"num_experts":16,"num_experts_per_tok":2,"moe_num_heads":2,"moe_intermediate_size":1024,"max_position_embeddings":2048,"quantization_config":{"quant_method":"bitnet"}}""",
    };

    public static void Write(string configJson, string outputDir, DType dtype, ulong seed, Action<int, int, string>? progress = null)
    {
        using var doc = JsonDocument.Parse(configJson);
        var config = ModelConfig.Parse(doc.RootElement, "config");
        Directory.CreateDirectory(outputDir);
        var rng = new Sampling.Rng(seed);
        var tensors = ModelTensors.Enumerate(config).ToList();
        var entries = new List<SafetensorsWriter.Entry>();
        int done = 0;
        foreach (var t in tensors)
        {
            var values = new float[t.Elements];
            if (t.Role == TensorRole.Norm) Array.Fill(values, 1f);
            else
            {
                // Uniform with the variance of N(0, 1/fan_in): activations keep their scale through the layers.
                double a = t.Role == TensorRole.Embedding ? 1.0 : Math.Sqrt(3.0 / t.Shape[^1]);
                for (long i = 0; i < values.LongLength; i++) values[i] = (float)((rng.NextDouble() * 2 - 1) * a);
            }
            entries.Add(new SafetensorsWriter.Entry(t.Name, DTypeName(dtype), t.Shape, Encode(values, dtype)));
            progress?.Invoke(++done, tensors.Count, t.Name);
        }
        SafetensorsWriter.Write(Path.Combine(outputDir, "model.safetensors"), entries, new Dictionary<string, string> { ["format"] = "pt" });
        var json = JsonNode.Parse(configJson)!.AsObject();
        File.WriteAllText(Path.Combine(outputDir, "config.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(outputDir, "tokenizer.json"), SyntheticTokenizer(config.VocabSize));
    }

    private static string DTypeName(DType t) => t switch { DType.F32 => "F32", DType.F16 => "F16", _ => "BF16" };

    private static byte[] Encode(float[] values, DType t)
    {
        switch (t)
        {
            case DType.F32: return MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            case DType.F16:
            {
                var h = new Half[values.Length];
                System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(values, h);
                return MemoryMarshal.AsBytes(h.AsSpan()).ToArray();
            }
            default:
            {
                var b = new ushort[values.Length];
                for (int i = 0; i < values.Length; i++) b[i] = Bf16.FromSingle(values[i]);
                return MemoryMarshal.AsBytes(b.AsSpan()).ToArray();
            }
        }
    }

    /// <summary>A byte-level BPE tokenizer.json of exactly <paramref name="vocabSize"/> tokens (>= 257): the 256 bytes, synthetic merges, and &lt;|endoftext|&gt; last.</summary>
    public static string SyntheticTokenizer(int vocabSize)
    {
        if (vocabSize < 257) throw new BitMoeException($"vocab_size {vocabSize} is too small for a byte-level tokenizer (needs at least 257)");
        var vocab = new JsonObject();
        var tokens = new List<string>();
        for (int b = 0; b < 256; b++) { string s = ByteLevel.ByteToChar[b].ToString(); tokens.Add(s); vocab[s] = b; }
        var seen = new HashSet<string>(tokens);
        var merges = new JsonArray();
        // Merge printable letters and earlier merges into longer tokens; each new token is the concatenation of an
        // existing token and a short one (at most 3 letters, so that the pairs under 12 characters never run out:
        // drawing both sides from all tokens stalls before a 32000-token vocabulary).
        string letters = "etaoinshrdlcumwfgypbvkjxqz";
        var pieces = letters.Select(c => c.ToString()).Append("Ġ").ToList();
        var shortPieces = letters.Select(c => c.ToString()).ToList();
        var rng = new Sampling.Rng(7);
        int attempts = 0;
        while (tokens.Count < vocabSize - 1)
        {
            if (++attempts > 50 * vocabSize) throw new InvalidOperationException("could not build enough synthetic merges");
            string a = pieces[(int)(rng.NextUInt64() % (ulong)pieces.Count)];
            string b = shortPieces[(int)(rng.NextUInt64() % (ulong)shortPieces.Count)];
            if (a.Length + b.Length > 12) continue;
            string m = a + b;
            if (!seen.Add(m)) continue;
            merges.Add($"{a} {b}");
            vocab[m] = tokens.Count;
            tokens.Add(m);
            pieces.Add(m);
            if (m.Length <= 3 && !m.StartsWith('Ġ')) shortPieces.Add(m);
        }
        int eos = vocabSize - 1;
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = eos, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject { ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["vocab"] = vocab, ["merges"] = merges },
        };
        return root.ToJsonString();
    }
}
