using System.Text.Json;
using BitMoe.Quant;

namespace BitMoe.Engine;

public enum Activation { Silu, Relu2 }

/// <summary>
/// The validated contents of config.json (shared/docs/model-spec.md section 3), with every
/// default of the spec applied. Anything inconsistent is rejected here, before a weight is read.
/// </summary>
public sealed record ModelConfig
{
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public int MaxPositions { get; init; } = 2048;
    public float RopeTheta { get; init; } = 10000f;
    public float RmsNormEps { get; init; } = 1e-5f;
    public bool TieWordEmbeddings { get; init; }
    public Activation HiddenAct { get; init; } = Activation.Silu;
    public int IntermediateSize { get; init; }
    public required bool[] IsMoeLayer { get; init; }
    public int NumExperts { get; init; }
    public int NumExpertsPerTok { get; init; }
    public int MoeIntermediateSize { get; init; }
    public int MoeNumHeads { get; init; } = 1;
    public bool MoeHeadProj { get; init; }
    public bool MoeMergeProj { get; init; }
    /// <summary>Not in the spec table: the spec says "bias optional" for head/merge; these keys say whether it is there.</summary>
    public bool MoeHeadProjBias { get; init; }
    public bool MoeMergeProjBias { get; init; }
    public int SharedExpertIntermediateSize { get; init; }
    public bool NormTopkProb { get; init; } = true;
    public bool UseSubNorm { get; init; }
    /// <summary>True when config.json carries a bitnet quantization_config.</summary>
    public bool IsBitNet { get; init; }
    public string[] ModulesToNotConvert { get; init; } = DefaultNotConverted;
    public int? EosTokenId { get; init; }
    public int? BosTokenId { get; init; }
    /// <summary>Name of the chat template the checkpoint was tuned with (config.json key <c>bitmoe_chat_template</c>), if any.</summary>
    public string? ChatTemplate { get; init; }

    public static readonly string[] DefaultNotConverted = ["embed_tokens", "lm_head", "router"];

    public int QDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;
    public int SubTokenDim => HiddenSize / MoeNumHeads;
    public bool AnyMoe => IsMoeLayer.Any(b => b);

    /// <summary>HF's rule: a module stays unquantized when any listed name occurs in its full name.</summary>
    public bool IsQuantized(string moduleName) => IsBitNet && !ModulesToNotConvert.Any(moduleName.Contains);

    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path)) throw new BitMoeException($"{path}: config file not found");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new BitMoeException($"{path}: invalid JSON ({e.Message})"); }
        using (doc) return Parse(doc.RootElement, path);
    }

    public static ModelConfig Parse(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new BitMoeException($"{path}: expected a JSON object");
        var r = new JsonReaderHelper(root, path);

        string modelType = r.String("model_type", null) ?? throw new BitMoeException($"{path}: missing key 'model_type' (expected \"mhmoe\")");
        if (modelType != "mhmoe") throw new BitMoeException($"{path}: unknown model_type '{modelType}' (expected \"mhmoe\")");

        int vocab = r.RequiredInt("vocab_size"), hidden = r.RequiredInt("hidden_size"), layers = r.RequiredInt("num_hidden_layers");
        int heads = r.RequiredInt("num_attention_heads");
        int kvHeads = r.Int("num_key_value_heads", heads);
        if (heads <= 0 || hidden <= 0 || layers <= 0 || vocab <= 0 || kvHeads <= 0)
            throw new BitMoeException($"{path}: vocab_size, hidden_size, num_hidden_layers, num_attention_heads and num_key_value_heads must be positive");
        int headDim = r.Int("head_dim", hidden % heads == 0 ? hidden / heads : 0);
        if (headDim <= 0) throw new BitMoeException($"{path}: hidden_size {hidden} is not divisible by num_attention_heads {heads}; give head_dim");
        if (headDim % 2 != 0) throw new BitMoeException($"{path}: head_dim {headDim} must be even for rotary embeddings");
        if (heads % kvHeads != 0) throw new BitMoeException($"{path}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");

        string act = r.String("hidden_act", "silu")!;
        Activation activation = act switch
        {
            "silu" or "swiglu" => Activation.Silu,
            "relu2" => Activation.Relu2,
            _ => throw new BitMoeException($"{path}: unknown hidden_act '{act}' (expected silu or relu2)"),
        };

        var isMoe = new bool[layers];
        if (root.TryGetProperty("moe_layers", out var ml) && ml.ValueKind != JsonValueKind.Null)
        {
            if (ml.ValueKind != JsonValueKind.Array) throw new BitMoeException($"{path}: moe_layers must be a list of layer indices");
            foreach (var e in ml.EnumerateArray())
            {
                if (!e.TryGetInt32(out int i) || i < 0 || i >= layers)
                    throw new BitMoeException($"{path}: moe_layers entry {e.GetRawText()} is not a layer index in [0, {layers})");
                isMoe[i] = true;
            }
        }
        else if (r.Int("num_experts", 0) > 0) Array.Fill(isMoe, true);
        // A config that declares no experts is a dense model: "all layers" is the default only for MoE configs.
        bool anyMoe = isMoe.Any(b => b), anyDense = isMoe.Any(b => !b);

        int inter = r.Int("intermediate_size", 0);
        if (anyDense && inter <= 0) throw new BitMoeException($"{path}: intermediate_size is required (dense layers present)");

        int experts = 0, topk = 0, moeInter = 0, moeHeads = r.Int("moe_num_heads", 1), shared = r.Int("shared_expert_intermediate_size", 0);
        if (anyMoe)
        {
            experts = r.RequiredInt("num_experts", "for MoE layers");
            topk = r.RequiredInt("num_experts_per_tok", "for MoE layers");
            moeInter = r.RequiredInt("moe_intermediate_size", "for MoE layers");
            if (experts <= 0 || topk <= 0 || moeInter <= 0) throw new BitMoeException($"{path}: num_experts, num_experts_per_tok and moe_intermediate_size must be positive");
            if (topk > experts) throw new BitMoeException($"{path}: num_experts_per_tok {topk} is larger than num_experts {experts}");
            if (moeHeads <= 0 || hidden % moeHeads != 0) throw new BitMoeException($"{path}: hidden_size {hidden} is not divisible by moe_num_heads {moeHeads}");
            if (shared < 0) throw new BitMoeException($"{path}: shared_expert_intermediate_size must be >= 0");
        }

        bool bitnet = false;
        string[] notConvert = DefaultNotConverted;
        if (root.TryGetProperty("quantization_config", out var qc) && qc.ValueKind == JsonValueKind.Object)
        {
            string? method = qc.TryGetProperty("quant_method", out var qm) && qm.ValueKind == JsonValueKind.String ? qm.GetString() : null;
            if (method != "bitnet") throw new BitMoeException($"{path}: quantization_config.quant_method '{method}' is not supported (expected \"bitnet\")");
            bitnet = true;
            if (qc.TryGetProperty("modules_to_not_convert", out var mn) && mn.ValueKind == JsonValueKind.Array)
                notConvert = mn.EnumerateArray().Select(e => e.GetString() ?? "").ToArray();
        }

        var cfg = new ModelConfig
        {
            VocabSize = vocab, HiddenSize = hidden, NumLayers = layers, NumHeads = heads, NumKvHeads = kvHeads, HeadDim = headDim,
            MaxPositions = r.Int("max_position_embeddings", 2048),
            RopeTheta = r.Float("rope_theta", 10000f),
            RmsNormEps = r.Float("rms_norm_eps", 1e-5f),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", false),
            HiddenAct = activation,
            IntermediateSize = inter,
            IsMoeLayer = isMoe,
            NumExperts = experts, NumExpertsPerTok = topk, MoeIntermediateSize = moeInter, MoeNumHeads = moeHeads,
            MoeHeadProj = r.Bool("moe_head_proj", moeHeads > 1),
            MoeMergeProj = r.Bool("moe_merge_proj", moeHeads > 1),
            MoeHeadProjBias = r.Bool("moe_head_proj_bias", false),
            MoeMergeProjBias = r.Bool("moe_merge_proj_bias", false),
            SharedExpertIntermediateSize = shared,
            NormTopkProb = r.Bool("norm_topk_prob", true),
            UseSubNorm = r.Bool("use_sub_norm", false),
            IsBitNet = bitnet,
            ModulesToNotConvert = notConvert,
            EosTokenId = r.OptionalInt("eos_token_id"),
            BosTokenId = r.OptionalInt("bos_token_id"),
            ChatTemplate = r.String("bitmoe_chat_template", null),
        };
        if (cfg.MaxPositions <= 0) throw new BitMoeException($"{path}: max_position_embeddings must be positive");
        return cfg;
    }

    /// <summary>Typed reads of optional and required keys with errors that name the key.</summary>
    private readonly struct JsonReaderHelper(JsonElement root, string path)
    {
        private bool TryGet(string key, out JsonElement e) =>
            root.TryGetProperty(key, out e) && e.ValueKind != JsonValueKind.Null;

        public int RequiredInt(string key, string why = "")
        {
            if (!TryGet(key, out _)) throw new BitMoeException($"{path}: missing required key '{key}'{(why.Length > 0 ? " " + why : "")}");
            return Int(key, 0);
        }

        public int Int(string key, int fallback)
        {
            if (!TryGet(key, out var e)) return fallback;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v)) return v;
            throw new BitMoeException($"{path}: key '{key}' must be an integer, got {e.GetRawText()}");
        }

        public int? OptionalInt(string key)
        {
            if (!TryGet(key, out var e)) return null;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v)) return v;
            if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() > 0 && e[0].TryGetInt32(out int first)) return first;
            return null;
        }

        public float Float(string key, float fallback)
        {
            if (!TryGet(key, out var e)) return fallback;
            if (e.ValueKind == JsonValueKind.Number) return (float)e.GetDouble();
            throw new BitMoeException($"{path}: key '{key}' must be a number, got {e.GetRawText()}");
        }

        public bool Bool(string key, bool fallback)
        {
            if (!TryGet(key, out var e)) return fallback;
            return e.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new BitMoeException($"{path}: key '{key}' must be true or false, got {e.GetRawText()}"),
            };
        }

        public string? String(string key, string? fallback)
        {
            if (!TryGet(key, out var e)) return fallback;
            if (e.ValueKind == JsonValueKind.String) return e.GetString();
            throw new BitMoeException($"{path}: key '{key}' must be a string, got {e.GetRawText()}");
        }
    }
}
