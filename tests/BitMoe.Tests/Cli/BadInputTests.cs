using System.Text.Json.Nodes;
using BitMoe.Quant.Formats;

namespace BitMoe.Tests.Cli;

/// <summary>
/// Every kind of broken checkpoint or option gets one line on stderr that names the file (or
/// option) and the fault, exit code 1, and no stack trace. Each test breaks a copy of a fixture.
/// </summary>
public sealed class BadInputTests : IDisposable
{
    private const string Fixture = "mhmoe_h2_top2_bitnet";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bitmoe-bad-" + Guid.NewGuid().ToString("N"));

    public BadInputTests()
    {
        Directory.CreateDirectory(_dir);
        foreach (var f in Directory.GetFiles(Fixtures.Dir(Fixture)))
            File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
    }

    public void Dispose() => Directory.Delete(_dir, true);

    private string Weights => Path.Combine(_dir, "model.safetensors");
    private string Config => Path.Combine(_dir, "config.json");

    private CliProcess.Result Generate(params string[] extra) =>
        CliProcess.Run(["generate", "-m", _dir, "-p", "Hello", "-n", "2", .. extra]);

    /// <summary>Rewrites model.safetensors (or <paramref name="file"/>) after <paramref name="edit"/> changed its list of tensors.</summary>
    private void RewriteWeights(Func<List<SafetensorsWriter.Entry>, List<SafetensorsWriter.Entry>> edit, string? file = null)
    {
        file ??= Weights;
        List<SafetensorsWriter.Entry> entries;
        using (var st = SafetensorsFile.Open(file))
        {
            entries = st.Tensors.Values.Select(t => new SafetensorsWriter.Entry(t.Name, t.TypeName, t.Shape, Bytes(t))).ToList();
        }
        SafetensorsWriter.Write(file, edit(entries));
    }

    private static unsafe byte[] Bytes(TensorView t) => new ReadOnlySpan<byte>(t.Data, (int)t.ByteLength).ToArray();

    private void EditConfig(Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(File.ReadAllText(Config))!.AsObject();
        edit(json);
        File.WriteAllText(Config, json.ToJsonString());
    }

    [Fact]
    public void MissingTensor()
    {
        RewriteWeights(e => e.Where(t => t.Name != "model.layers.1.self_attn.k_proj.weight").ToList());
        CliProcess.AssertCleanError(Generate(), _dir, "missing tensor 'model.layers.1.self_attn.k_proj.weight'");
    }

    [Fact]
    public void ExtraTensor()
    {
        RewriteWeights(e => [.. e, new SafetensorsWriter.Entry("model.layers.0.mlp.surprise.weight", "F32", [2], new byte[8])]);
        CliProcess.AssertCleanError(Generate(), "model.safetensors", "unexpected tensor 'model.layers.0.mlp.surprise.weight'");
    }

    [Fact]
    public void WrongShape()
    {
        RewriteWeights(e => e.Select(t => t.Name == "model.layers.0.self_attn.o_proj.weight"
            ? t with { Shape = [t.Shape[0] / 2, t.Shape[1] * 2] } : t).ToList());
        CliProcess.AssertCleanError(Generate(), "model.safetensors", "'model.layers.0.self_attn.o_proj.weight' has shape", "expected");
    }

    [Fact]
    public void UnknownDtype()
    {
        RewriteWeights(e => e.Select(t => t.Name == "model.norm.weight" ? t with { DType = "Q7_X" } : t).ToList());
        CliProcess.AssertCleanError(Generate(), "model.safetensors", "unknown dtype 'Q7_X'");
    }

    [Fact]
    public void IntegerDtypeWhereWeightsAreExpected()
    {
        RewriteWeights(e => e.Select(t => t.Name == "model.norm.weight" ? t with { DType = "I32" } : t).ToList());
        CliProcess.AssertCleanError(Generate(), "model.safetensors", "'model.norm.weight' has dtype I32");
    }

    [Fact]
    public void TruncatedSafetensors()
    {
        var bytes = File.ReadAllBytes(Weights);
        File.WriteAllBytes(Weights, bytes[..^1000]);
        CliProcess.AssertCleanError(Generate(), "model.safetensors", "truncated");
    }

    [Fact]
    public void HeaderLengthPastTheEnd()
    {
        var bytes = File.ReadAllBytes(Weights);
        BitConverter.GetBytes((ulong)bytes.Length * 4).CopyTo(bytes, 0);
        File.WriteAllBytes(Weights, bytes);
        CliProcess.AssertCleanError(Generate(), "model.safetensors", "header length", "past the end");
    }

    [Fact]
    public void InvalidJsonConfig()
    {
        File.WriteAllText(Config, "{ \"model_type\": \"mhmoe\", ");
        CliProcess.AssertCleanError(Generate(), "config.json", "invalid JSON");
    }

    [Fact]
    public void UnknownModelType()
    {
        EditConfig(c => c["model_type"] = "gpt_neox");
        CliProcess.AssertCleanError(Generate(), "config.json", "unknown model_type 'gpt_neox'");
    }

    [Fact]
    public void HiddenSizeNotDivisibleByMoeHeads()
    {
        EditConfig(c => c["moe_num_heads"] = 3);
        CliProcess.AssertCleanError(Generate(), "config.json", "not divisible by moe_num_heads 3");
    }

    [Fact]
    public void MoreExpertsPerTokenThanExperts()
    {
        EditConfig(c => c["num_experts_per_tok"] = 99);
        CliProcess.AssertCleanError(Generate(), "config.json", "num_experts_per_tok 99 is larger than num_experts");
    }

    [Fact]
    public void MissingTokenizer()
    {
        File.Delete(Path.Combine(_dir, "tokenizer.json"));
        CliProcess.AssertCleanError(Generate(), "tokenizer.json", "tokenizer not found");
    }

    [Fact]
    public void EmptyPromptFile()
    {
        string empty = Path.Combine(_dir, "empty.txt");
        File.WriteAllText(empty, "");
        CliProcess.AssertCleanError(CliProcess.Run("generate", "-m", _dir, "-f", empty), "empty.txt", "empty");
        CliProcess.AssertCleanError(CliProcess.Run("perplexity", "-m", _dir, "-f", empty), "empty.txt", "empty");
    }

    [Fact]
    public void ContextLargerThanMaxPositions()
    {
        EditConfig(c => c["max_position_embeddings"] = 64);
        CliProcess.AssertCleanError(Generate("-c", "65"), "context length 65", "max_position_embeddings 64");
    }

    [Fact]
    public void ModelPathThatDoesNotExist()
    {
        CliProcess.AssertCleanError(CliProcess.Run("generate", "-m", _dir + "-nope", "-p", "x"), "-nope", "does not exist");
    }

    [Fact]
    public void FakeQuantOnAFloatCheckpoint()
    {
        EditConfig(c => c.Remove("quantization_config"));
        CliProcess.AssertCleanError(Generate("--mode", "fakequant"), "quantization_config");
    }

    /// <summary>
    /// FloatDot widens F16 rows without handling infinities and NaNs, so BitLinear refuses a float F16 matrix that
    /// holds one when it loads: here the untied lm_head (vocab 347 x hidden 64, never quantized, so FloatGemv reads it
    /// in every mode) of the sharded F16 fixture, with +inf at row 300, column 17, in the first of its three shards.
    /// </summary>
    [Fact]
    public void InfiniteValueInAnF16FloatMatrix()
    {
        string dir = Path.Combine(_dir, "f16");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Fixtures.Dir("mhmoe_relu2_subnorm_sharded_f16")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        const string shard = "model-00001-of-00003.safetensors";
        RewriteWeights(e => e.Select(t =>
        {
            if (t.Name != "lm_head.weight") return t;
            Assert.Equal("F16", t.DType);
            Assert.Equal([347L, 64L], t.Shape);
            var data = t.Data.ToArray();
            BitConverter.GetBytes(BitConverter.HalfToUInt16Bits(Half.PositiveInfinity)).CopyTo(data, (300 * 64 + 17) * 2);
            return t with { Data = data };
        }).ToList(), Path.Combine(dir, shard));
        foreach (var mode in new[] { "auto", "packed" })
            CliProcess.AssertCleanError(CliProcess.Run("generate", "-m", dir, "-p", "Hello", "-n", "2", "--mode", mode),
                shard, "tensor 'lm_head.weight'", "infinite or NaN", "row 300, column 17");
    }

    [Fact]
    public void UnknownMode()
    {
        CliProcess.AssertCleanError(Generate("--mode", "int4"), "--mode", "int4");
    }

    [Fact]
    public void UnknownCacheType()
    {
        CliProcess.AssertCleanError(Generate("--cache-type", "bf16"), "--cache-type", "'bf16'", "expected f32 or f16");
    }
}
