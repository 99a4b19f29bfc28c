using BitMoe.Engine;
using BitMoe.Engine.Conversion;
using BitMoe.Engine.Evaluation;
using BitMoe.Engine.Layers;
using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Tests.Engine;

/// <summary>
/// quantize writes a GGUF file whose packed forward computes what the engine's fake-quant computes
/// on the checkpoint (model-spec.md section 2), for both ternary layouts and both architectures.
/// </summary>
public sealed class GgufModelTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bitmoe-gguf-" + Guid.NewGuid().ToString("N"));

    public GgufModelTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, true);

    public static TheoryData<string, string> BitNetTimesType()
    {
        var data = new TheoryData<string, string>();
        foreach (var n in Fixtures.CheckpointNames().Where(n => Reference.Load(n).LogitsFakeQuant != null))
            foreach (var t in new[] { "tq2_0", "tq1_0" }) data.Add(n, t);
        return data;
    }

    private static float[][] Logits(LoadedModel m, int[] tokens)
    {
        m.Transformer.Cache.Clear();
        return tokens.Select(t => m.Transformer.Forward(t).ToArray()).ToArray();
    }

    private static double MaxRelative(float[][] a, float[][] b)
    {
        double diff = 0, max = 0;
        for (int i = 0; i < a.Length; i++)
            for (int v = 0; v < a[i].Length; v++)
            {
                diff = Math.Max(diff, Math.Abs(a[i][v] - b[i][v]));
                max = Math.Max(max, Math.Abs(b[i][v]));
            }
        return diff / max;
    }

    [Theory, MemberData(nameof(BitNetTimesType))]
    public void PackedGgufEqualsFakeQuantCheckpoint(string fixture, string type)
    {
        var reference = Reference.Load(fixture);
        string gguf = Path.Combine(_dir, fixture + ".gguf");
        var summary = Quantizer.Run(Fixtures.Dir(fixture), gguf, new QuantizeOptions(Quantizer.ParseType(type)));
        Assert.Equal("mhmoe", summary.Architecture); // the fixtures' rows are not multiples of 256

        using var fake = ModelLoader.Load(Fixtures.Dir(fixture), ExecutionMode.FakeQuant, reference.Tokens.Length);
        using var packed = ModelLoader.Load(gguf, null, reference.Tokens.Length);
        Assert.Equal(ExecutionMode.Packed, packed.Transformer.Mode);
        double err = MaxRelative(Logits(packed, reference.Tokens), Logits(fake, reference.Tokens));
        Assert.True(err <= 1e-4, $"{fixture} {type}: packed GGUF logits differ from fake-quant by {err:E3} (bound 1e-4)");

        double pplPacked = Perplexity.Evaluate(packed.Transformer, reference.Tokens, reference.PplCtx).Perplexity;
        double pplFake = Perplexity.Evaluate(fake.Transformer, reference.Tokens, reference.PplCtx).Perplexity;
        Assert.True(Math.Abs(pplPacked - pplFake) / pplFake <= 1e-5, $"{fixture} {type}: perplexity {pplPacked} vs {pplFake}");
        double vsTorch = Math.Abs(pplPacked - reference.PplFakeQuant!.Value) / reference.PplFakeQuant.Value;
        Assert.True(vsTorch <= 1e-3, $"{fixture} {type}: perplexity {pplPacked} vs PyTorch fake-quant {reference.PplFakeQuant} ({vsTorch:E3})");
    }

    [Fact]
    public void GgufCarriesConfigAndTokenizer()
    {
        const string fixture = "mhmoe_h4_top3_bias_bf16";
        string gguf = Path.Combine(_dir, "f16.gguf");
        Quantizer.Run(Fixtures.Dir(fixture), gguf, new QuantizeOptions(OutputType.F16));
        using var folder = ModelLoader.Load(Fixtures.Dir(fixture), ExecutionMode.Fp, 48);
        using var file = ModelLoader.Load(gguf, null, 48);
        Assert.Equal(ExecutionMode.Fp, file.Transformer.Mode);
        var a = folder.Config; var b = file.Config;
        // The file names the end-of-text token explicitly (tokenizer.ggml.eos_token_id); the folder finds the same one by name.
        Assert.Equal(a with { IsMoeLayer = [], ModulesToNotConvert = [] }, b with { IsMoeLayer = [], ModulesToNotConvert = [], EosTokenId = null });
        Assert.Equal(a.IsMoeLayer, b.IsMoeLayer);
        const string text = "The Fulton County Grand Jury said Friday <|endoftext|> café";
        Assert.Equal(folder.Tokenizer.Encode(text), file.Tokenizer.Encode(text));
        Assert.Equal(folder.EosId, file.EosId);
    }

    /// <summary>A Mixtral-shaped (h = 1) fixture in F16 written as llama: names, stacked experts and permuted q/k rows map back exactly.</summary>
    [Fact]
    public void LlamaArchitectureRoundTripsExactlyInF16()
    {
        const string fixture = "smoe_top1_tied_f16";
        string gguf = Path.Combine(_dir, "llama.gguf");
        var summary = Quantizer.Run(Fixtures.Dir(fixture), gguf, new QuantizeOptions(OutputType.F16, "llama"));
        Assert.Equal("llama", summary.Architecture);
        using (var f = GgufFile.Open(gguf, TernaryGguf.Types))
        {
            Assert.Equal("llama", f.GetString("general.architecture"));
            Assert.Contains("blk.0.ffn_gate_exps.weight", f.Tensors.Keys);
            Assert.Contains("blk.0.attn_q.weight", f.Tensors.Keys);
            Assert.DoesNotContain("output.weight", f.Tensors.Keys); // tied
        }
        var tokens = Reference.Load(fixture).Tokens;
        using var folder = ModelLoader.Load(Fixtures.Dir(fixture), ExecutionMode.Fp, tokens.Length);
        using var file = ModelLoader.Load(gguf, null, tokens.Length);
        Assert.Equal(0, MaxRelative(Logits(file, tokens), Logits(folder, tokens)));
    }

    /// <summary>A random BitNet model with rows of 256: auto picks llama, and the packed file equals fake-quant.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TernaryLlamaFileEqualsFakeQuant(bool moe)
    {
        string config = moe
            ? """{"model_type":"mhmoe","vocab_size":300,"hidden_size":256,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":256,"max_position_embeddings":64,"quantization_config":{"quant_method":"bitnet"}}"""
            : """{"model_type":"mhmoe","vocab_size":300,"hidden_size":256,"num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":512,"max_position_embeddings":64,"quantization_config":{"quant_method":"bitnet"}}""";
        string ckpt = Path.Combine(_dir, "ckpt");
        RandomModel.Write(config, ckpt, DType.F32, 5);
        string gguf = Path.Combine(_dir, "llama.gguf");
        var summary = Quantizer.Run(ckpt, gguf, new QuantizeOptions(OutputType.Tq2));
        Assert.Equal("llama", summary.Architecture);
        Assert.True(summary.BitsPerTernaryWeight <= 2.07, $"{summary.BitsPerTernaryWeight} bits/weight");

        var tokens = Enumerable.Range(0, 40).Select(i => (i * 37 + 11) % 300).ToArray();
        using var fake = ModelLoader.Load(ckpt, ExecutionMode.FakeQuant, tokens.Length);
        using var packed = ModelLoader.Load(gguf, null, tokens.Length);
        double err = MaxRelative(Logits(packed, tokens), Logits(fake, tokens));
        Assert.True(err <= 1e-4, $"llama packed vs fake-quant: {err:E3}");
    }

    [Theory]
    [InlineData("tq2_0", 256, 2.07)]
    [InlineData("tq1_0", 256, 1.70)]
    [InlineData("tq2_0", 192, 2.3)]
    [InlineData("tq1_0", 192, 1.9)]
    [InlineData("tq2_0", 96, 2.3)]
    [InlineData("tq1_0", 96, 1.9)]
    public void TernaryBitsPerWeight(string type, int hidden, double bound)
    {
        string config = $$$"""{"model_type":"mhmoe","vocab_size":300,"hidden_size":{{{hidden}}},"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":{{{2 * hidden}}},"max_position_embeddings":64,"quantization_config":{"quant_method":"bitnet"}}""";
        string ckpt = Path.Combine(_dir, "size");
        RandomModel.Write(config, ckpt, DType.F16, 1);
        var summary = Quantizer.Run(ckpt, Path.Combine(_dir, "size.gguf"), new QuantizeOptions(Quantizer.ParseType(type)));
        Assert.True(summary.BitsPerTernaryWeight <= bound, $"{type} hidden {hidden}: {summary.BitsPerTernaryWeight:F4} bits/weight > {bound}");
    }
}
