using System.Text.Json;
using System.Text.Json.Nodes;
using BitMoe.Engine.Tokenization;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Engine.Gguf;

/// <summary>
/// The GGUF metadata of a BitMoe model (docs/gguf.md lists every key): the config under
/// "{arch}.*" keys (arch = mhmoe, or llama for files llama.cpp loads), BitNet settings and the
/// float32 ternary scales under "bitmoe.*", and the tokenizer under "tokenizer.ggml.*".
/// Reading turns the keys back into a config.json object and validates it with the same code as
/// a checkpoint folder.
/// </summary>
public static class GgufModelMetadata
{
    public const string ArchitectureKey = "general.architecture";
    public const string BitNetKey = "bitmoe.bitnet";
    public const string NotConvertedKey = "bitmoe.modules_to_not_convert";
    public const string ScaleNamesKey = "bitmoe.ternary_scale_names";
    public const string ScalesKey = "bitmoe.ternary_scales";
    public const string ChatTemplateKey = "bitmoe.chat_template";

    private enum Kind { UInt, Float, Bool, String, IntArray }

    /// <summary>config.json key, GGUF key under the arch prefix, value kind, and whether llama files carry it.</summary>
    private static readonly (string Json, string Key, Kind Kind, bool Llama)[] Fields =
    [
        ("vocab_size", "vocab_size", Kind.UInt, true),
        ("hidden_size", "embedding_length", Kind.UInt, true),
        ("num_hidden_layers", "block_count", Kind.UInt, true),
        ("num_attention_heads", "attention.head_count", Kind.UInt, true),
        ("num_key_value_heads", "attention.head_count_kv", Kind.UInt, true),
        ("head_dim", "attention.key_length", Kind.UInt, true),
        ("max_position_embeddings", "context_length", Kind.UInt, true),
        ("rope_theta", "rope.freq_base", Kind.Float, true),
        ("rms_norm_eps", "attention.layer_norm_rms_epsilon", Kind.Float, true),
        ("intermediate_size", "feed_forward_length", Kind.UInt, true),
        ("num_experts", "expert_count", Kind.UInt, true),
        ("num_experts_per_tok", "expert_used_count", Kind.UInt, true),
        ("tie_word_embeddings", "tie_word_embeddings", Kind.Bool, false),
        ("hidden_act", "hidden_act", Kind.String, false),
        ("moe_layers", "moe_layers", Kind.IntArray, false),
        ("moe_intermediate_size", "expert_feed_forward_length", Kind.UInt, false),
        ("moe_num_heads", "moe_num_heads", Kind.UInt, false),
        ("moe_head_proj", "moe_head_proj", Kind.Bool, false),
        ("moe_merge_proj", "moe_merge_proj", Kind.Bool, false),
        ("moe_head_proj_bias", "moe_head_proj_bias", Kind.Bool, false),
        ("moe_merge_proj_bias", "moe_merge_proj_bias", Kind.Bool, false),
        ("shared_expert_intermediate_size", "expert_shared_feed_forward_length", Kind.UInt, false),
        ("norm_topk_prob", "norm_topk_prob", Kind.Bool, false),
        ("use_sub_norm", "use_sub_norm", Kind.Bool, false),
    ];

    private static readonly string[] RequiredJson = ["hidden_size", "num_hidden_layers", "num_attention_heads"];

    /// <summary>The config as "{arch}.*" keys, with every default made explicit.</summary>
    public static void WriteConfig(GgufWriter w, ModelConfig c, string arch)
    {
        bool llama = arch == "llama";
        var json = ToJson(c);
        if (llama && c.AnyMoe) json["intermediate_size"] = c.MoeIntermediateSize; // llama.cpp sizes expert tensors by feed_forward_length
        w.Add(ArchitectureKey, GgufValue.String(arch));
        foreach (var (jsonKey, key, kind, inLlama) in Fields)
        {
            if (llama && !inLlama) continue;
            if (json[jsonKey] is not { } node) continue;
            w.Add($"{arch}.{key}", kind switch
            {
                Kind.UInt => GgufValue.UInt32((uint)node.GetValue<int>()),
                Kind.Float => GgufValue.Float32(node.GetValue<float>()),
                Kind.Bool => GgufValue.Bool(node.GetValue<bool>()),
                Kind.String => GgufValue.String(node.GetValue<string>()),
                _ => GgufValue.Array(node.AsArray().Select(n => n!.GetValue<int>()).ToArray()),
            });
        }
        // llama.cpp reads the head size here too (rope.dimension_count), and value_length beside key_length.
        w.Add($"{arch}.attention.value_length", GgufValue.UInt32((uint)c.HeadDim));
        w.Add($"{arch}.rope.dimension_count", GgufValue.UInt32((uint)c.HeadDim));
        w.Add(BitNetKey, GgufValue.Bool(c.IsBitNet));
        if (c.IsBitNet) w.Add(NotConvertedKey, GgufValue.Array(c.ModulesToNotConvert));
        if (c.ChatTemplate != null) w.Add(ChatTemplateKey, GgufValue.String(c.ChatTemplate));
    }

    /// <summary>A config.json object equivalent to <paramref name="c"/>.</summary>
    public static JsonObject ToJson(ModelConfig c)
    {
        var o = new JsonObject
        {
            ["model_type"] = "mhmoe",
            ["vocab_size"] = c.VocabSize, ["hidden_size"] = c.HiddenSize, ["num_hidden_layers"] = c.NumLayers,
            ["num_attention_heads"] = c.NumHeads, ["num_key_value_heads"] = c.NumKvHeads, ["head_dim"] = c.HeadDim,
            ["max_position_embeddings"] = c.MaxPositions, ["rope_theta"] = c.RopeTheta, ["rms_norm_eps"] = c.RmsNormEps,
            ["tie_word_embeddings"] = c.TieWordEmbeddings, ["hidden_act"] = c.HiddenAct == Activation.Silu ? "silu" : "relu2",
            ["norm_topk_prob"] = c.NormTopkProb, ["use_sub_norm"] = c.UseSubNorm,
        };
        if (c.IntermediateSize > 0) o["intermediate_size"] = c.IntermediateSize;
        o["moe_layers"] = new JsonArray(Enumerable.Range(0, c.NumLayers).Where(i => c.IsMoeLayer[i]).Select(i => (JsonNode)i).ToArray());
        if (c.AnyMoe)
        {
            o["num_experts"] = c.NumExperts; o["num_experts_per_tok"] = c.NumExpertsPerTok;
            o["moe_intermediate_size"] = c.MoeIntermediateSize; o["moe_num_heads"] = c.MoeNumHeads;
            o["moe_head_proj"] = c.MoeHeadProj; o["moe_merge_proj"] = c.MoeMergeProj;
            o["moe_head_proj_bias"] = c.MoeHeadProjBias; o["moe_merge_proj_bias"] = c.MoeMergeProjBias;
            o["shared_expert_intermediate_size"] = c.SharedExpertIntermediateSize;
        }
        if (c.IsBitNet)
            o["quantization_config"] = new JsonObject
            {
                ["quant_method"] = "bitnet",
                ["modules_to_not_convert"] = new JsonArray(c.ModulesToNotConvert.Select(m => (JsonNode)m).ToArray()),
            };
        if (c.EosTokenId is int eos) o["eos_token_id"] = eos;
        if (c.BosTokenId is int bos) o["bos_token_id"] = bos;
        if (c.ChatTemplate != null) o["bitmoe_chat_template"] = c.ChatTemplate;
        return o;
    }

    /// <summary>The validated config of a GGUF model file, and its architecture (mhmoe or llama).</summary>
    public static ModelConfig ReadConfig(GgufFile f, out string arch)
    {
        if (!f.Metadata.TryGetValue(ArchitectureKey, out var archValue) || archValue.Value is not string a)
            throw new BitMoeException($"{f.Path}: missing required key '{ArchitectureKey}'");
        arch = a;
        if (arch is not ("mhmoe" or "llama"))
            throw new BitMoeException($"{f.Path}: architecture '{arch}' is not supported (expected mhmoe or llama)");

        var json = new JsonObject { ["model_type"] = "mhmoe" };
        foreach (var (jsonKey, key, kind, _) in Fields)
        {
            string full = $"{arch}.{key}";
            if (!f.Metadata.TryGetValue(full, out var v))
            {
                if (RequiredJson.Contains(jsonKey)) throw new BitMoeException($"{f.Path}: missing required key '{full}'");
                continue;
            }
            json[jsonKey] = kind switch
            {
                Kind.UInt => JsonValue.Create(Number(f, full, v)),
                Kind.Float => JsonValue.Create(Number(f, full, v)),
                Kind.Bool => v.Value is bool b ? JsonValue.Create(b) : throw WrongType(f, full, v, "bool"),
                Kind.String => v.Value is string s ? JsonValue.Create(s) : throw WrongType(f, full, v, "string"),
                _ => v.Value is int[] ints ? new JsonArray(ints.Select(i => (JsonNode)i).ToArray()) : throw WrongType(f, full, v, "array of int32"),
            };
        }
        if (json["head_dim"] is JsonValue hd && json["num_attention_heads"] is JsonValue nh && json["hidden_size"] is JsonValue hs
            && hd.GetValue<double>() * nh.GetValue<double>() == hs.GetValue<double>())
            json.Remove("head_dim"); // implied; keeps the same validation path as a config.json without it
        if (json["vocab_size"] == null)
        {
            if (!f.Tensors.TryGetValue(arch == "llama" ? "token_embd.weight" : "model.embed_tokens.weight", out var embd))
                throw new BitMoeException($"{f.Path}: missing key '{arch}.vocab_size' and no token embedding to infer it from");
            json["vocab_size"] = embd.Shape[0];
        }
        if (arch == "llama")
        {
            // llama.cpp's Llama/Mixtral: SwiGLU, untied unless output.weight is absent, experts on every layer.
            json["tie_word_embeddings"] = !f.Tensors.ContainsKey("output.weight");
            if (json["num_experts"] is JsonValue ne && ne.GetValue<double>() > 0)
                json["moe_intermediate_size"] = json["intermediate_size"]!.DeepClone();
        }
        if (f.Metadata.TryGetValue(BitNetKey, out var bn) && bn.Value is true)
        {
            var q = new JsonObject { ["quant_method"] = "bitnet" };
            if (f.Metadata.TryGetValue(NotConvertedKey, out var nc) && nc.Value is string[] names)
                q["modules_to_not_convert"] = new JsonArray(names.Select(n => (JsonNode)n).ToArray());
            json["quantization_config"] = q;
        }
        if (f.Metadata.TryGetValue("tokenizer.ggml.eos_token_id", out var eos)) json["eos_token_id"] = Number(f, "tokenizer.ggml.eos_token_id", eos);
        if (f.Metadata.TryGetValue(ChatTemplateKey, out var ct) && ct.Value is string tmpl) json["bitmoe_chat_template"] = tmpl;

        using var doc = JsonDocument.Parse(json.ToJsonString());
        return ModelConfig.Parse(doc.RootElement, f.Path);
    }

    private static double Number(GgufFile f, string key, GgufValue v) => v.Value switch
    {
        byte or sbyte or ushort or short or uint or int or ulong or long or float or double => Convert.ToDouble(v.Value),
        _ => throw WrongType(f, key, v, "a number"),
    };

    private static BitMoeException WrongType(GgufFile f, string key, GgufValue v, string expected) =>
        new($"{f.Path}: key '{key}' has type {v.TypeText}, expected {expected}");

    /// <summary>The float32 tensor scale of every ternary tensor, by HF name.</summary>
    public static Dictionary<string, float> ReadScales(GgufFile f)
    {
        var scales = new Dictionary<string, float>(StringComparer.Ordinal);
        if (!f.Metadata.TryGetValue(ScaleNamesKey, out var n) || !f.Metadata.TryGetValue(ScalesKey, out var s)) return scales;
        if (n.Value is not string[] names) throw WrongType(f, ScaleNamesKey, n, "array of string");
        if (s.Value is not float[] values) throw WrongType(f, ScalesKey, s, "array of float32");
        if (names.Length != values.Length)
            throw new BitMoeException($"{f.Path}: '{ScaleNamesKey}' has {names.Length} entries but '{ScalesKey}' has {values.Length}");
        for (int i = 0; i < names.Length; i++) scales[names[i]] = values[i];
        return scales;
    }

    /// <summary>tokenizer.ggml.* in llama.cpp's "gpt2" (byte-level BPE) form; the token list is padded to <paramref name="vocabSize"/>.</summary>
    public static void WriteTokenizer(GgufWriter w, TokenizerData t, int vocabSize, int? eosId)
    {
        var tokens = new string[vocabSize];
        var types = new int[vocabSize];
        for (int id = 0; id < vocabSize; id++)
        {
            string? tok = id < t.Tokens.Length ? t.Tokens[id] : null;
            tokens[id] = tok ?? $"[PAD{id}]";
            // llama.cpp token types: 1 normal, 3 control (special), 4 user-defined (added, not special), 5 unused
            types[id] = tok == null ? 5 : t.SpecialIds.Contains(id) ? 3 : t.Added.TryGetValue(tok, out int a) && a == id ? 4 : 1;
        }
        w.Add("tokenizer.ggml.model", GgufValue.String("gpt2"));
        w.Add("tokenizer.ggml.pre", GgufValue.String(t.Pattern == TokenizerData.Gpt2Pattern ? "gpt-2" : "bitmoe-regex"));
        if (t.Pattern != TokenizerData.Gpt2Pattern) w.Add("bitmoe.tokenizer.pattern", GgufValue.String(t.Pattern));
        w.Add("tokenizer.ggml.tokens", GgufValue.Array(tokens));
        w.Add("tokenizer.ggml.token_type", GgufValue.Array(types));
        w.Add("tokenizer.ggml.merges", GgufValue.Array(t.Merges.ToArray()));
        if (t.BosId is int bos) w.Add("tokenizer.ggml.bos_token_id", GgufValue.UInt32((uint)bos));
        w.Add("tokenizer.ggml.add_bos_token", GgufValue.Bool(t.BosId != null));
        if (eosId is int eos) w.Add("tokenizer.ggml.eos_token_id", GgufValue.UInt32((uint)eos));
    }

    /// <summary>The tokenizer embedded in a GGUF file (tokenizer.ggml.model = gpt2).</summary>
    public static TextTokenizer ReadTokenizer(GgufFile f)
    {
        string model = f.Metadata.TryGetValue("tokenizer.ggml.model", out var m) && m.Value is string s ? s
            : throw new BitMoeException($"{f.Path}: missing required key 'tokenizer.ggml.model' (the file has no tokenizer)");
        if (model != "gpt2") throw new BitMoeException($"{f.Path}: tokenizer.ggml.model '{model}' is not supported (expected gpt2, byte-level BPE)");
        var tokens = f.Metadata.TryGetValue("tokenizer.ggml.tokens", out var tv) && tv.Value is string[] ts ? ts
            : throw new BitMoeException($"{f.Path}: missing required key 'tokenizer.ggml.tokens'");
        var merges = f.Metadata.TryGetValue("tokenizer.ggml.merges", out var mv) && mv.Value is string[] ms ? ms : [];
        var types = f.Metadata.TryGetValue("tokenizer.ggml.token_type", out var ty) && ty.Value is int[] tt ? tt : new int[tokens.Length];
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var special = new HashSet<int>();
        var list = new string?[tokens.Length];
        for (int id = 0; id < tokens.Length; id++)
        {
            int type = id < types.Length ? types[id] : 1;
            list[id] = type == 5 ? null : tokens[id];
            if (type is 3 or 4) added[tokens[id]] = id;
            if (type == 3) special.Add(id);
        }
        string pattern = f.Metadata.TryGetValue("bitmoe.tokenizer.pattern", out var pv) && pv.Value is string p ? p : TokenizerData.Gpt2Pattern;
        int? bos = f.Metadata.TryGetValue("tokenizer.ggml.add_bos_token", out var ab) && ab.Value is true
            && f.Metadata.TryGetValue("tokenizer.ggml.bos_token_id", out var bv) ? (int)Number(f, "tokenizer.ggml.bos_token_id", bv) : null;
        return new TextTokenizer(new TokenizerData(list, merges, added, special, pattern, bos), f.Path);
    }
}
