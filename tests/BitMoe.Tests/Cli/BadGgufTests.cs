using System.Security.Cryptography;
using BitMoe.Engine.Conversion;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Tests.Cli;

/// <summary>
/// Broken GGUF model files and failed quantize runs: one line on stderr naming the file and the
/// fault, exit code 1, no stack trace, and no output file left behind.
/// </summary>
public sealed class BadGgufTests : IDisposable
{
    private const string Fixture = "mhmoe_h2_top2_bitnet";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bitmoe-badgguf-" + Guid.NewGuid().ToString("N"));
    private readonly string _good;

    public BadGgufTests()
    {
        Directory.CreateDirectory(_dir);
        _good = Path.Combine(_dir, "good.gguf");
        Quantizer.Run(Fixtures.Dir(Fixture), _good, new QuantizeOptions(OutputType.Tq2));
    }

    public void Dispose() => Directory.Delete(_dir, true);

    private string Variant(string name, Action<byte[]>? patch = null, int truncate = 0)
    {
        var bytes = File.ReadAllBytes(_good);
        patch?.Invoke(bytes);
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes[..(bytes.Length - truncate)]);
        return path;
    }

    /// <summary>Rewrites the good file without a metadata key or tensor, or with one tensor's dims changed.</summary>
    private string Rewritten(string name, string? dropKey = null, string? dropTensor = null, string? swapDims = null)
    {
        string path = Path.Combine(_dir, name);
        using var f = GgufFile.Open(_good, TernaryGguf.Types);
        var w = new GgufWriter(TernaryGguf.Types);
        foreach (var (k, v) in f.Metadata) if (k != dropKey && k != GgufFile.AlignmentKey) w.Add(k, v);
        foreach (var t in f.Tensors.Values)
        {
            if (t.Name == dropTensor) continue;
            var dims = t.Name == swapDims ? t.Dims.Reverse().ToArray() : t.Dims;
            w.AddTensor(t.Name, dims, t.TypeId, t.Bytes.ToArray());
        }
        w.Write(path);
        return path;
    }

    private static CliProcess.Result Generate(string model) => CliProcess.Run("generate", "-m", model, "-p", "Hello", "-n", "2");

    [Fact]
    public void GoodFileRuns() => Assert.Equal(0, Generate(_good).ExitCode);

    [Fact]
    public void BadMagic() =>
        CliProcess.AssertCleanError(Generate(Variant("magic.gguf", b => b[0] = (byte)'X')), "magic.gguf", "magic");

    [Fact]
    public void WrongVersion() =>
        CliProcess.AssertCleanError(Generate(Variant("version.gguf", b => BitConverter.GetBytes(2u).CopyTo(b, 4))), "version.gguf", "version");

    [Fact]
    public void TruncatedData() =>
        CliProcess.AssertCleanError(Generate(Variant("short.gguf", truncate: 5000)), "short.gguf", "truncated");

    [Fact]
    public void TruncatedHeader() =>
        CliProcess.AssertCleanError(Generate(Variant("tiny.gguf", truncate: (int)new FileInfo(_good).Length - 100)), "tiny.gguf", "truncated");

    [Fact]
    public void MissingRequiredKey() =>
        CliProcess.AssertCleanError(Generate(Rewritten("nokey.gguf", dropKey: "mhmoe.embedding_length")), "nokey.gguf", "missing required key 'mhmoe.embedding_length'");

    [Fact]
    public void MissingTokenizer() =>
        CliProcess.AssertCleanError(Generate(Rewritten("notok.gguf", dropKey: "tokenizer.ggml.tokens")), "notok.gguf", "tokenizer.ggml.tokens");

    [Fact]
    public void MissingTensor() =>
        CliProcess.AssertCleanError(Generate(Rewritten("notensor.gguf", dropTensor: "model.layers.1.self_attn.v_proj.weight")),
            "notensor.gguf", "missing tensor 'model.layers.1.self_attn.v_proj.weight'");

    [Fact]
    public void InconsistentShape() =>
        CliProcess.AssertCleanError(Generate(Rewritten("shape.gguf", swapDims: "lm_head.weight")), "shape.gguf", "'lm_head.weight' has shape", "expected");

    [Fact]
    public void MissingTernaryScales() =>
        CliProcess.AssertCleanError(Generate(Rewritten("noscale.gguf", dropKey: "bitmoe.ternary_scales")), "noscale.gguf", "no float32 scale");

    [Fact]
    public void FpModeOnTernaryFile() =>
        CliProcess.AssertCleanError(CliProcess.Run("generate", "-m", _good, "-p", "Hi", "--mode", "fp"), "good.gguf", "ternary", "--mode fp");

    private static string Hash(string dir) => string.Join(",", Directory.GetFiles(dir).Order()
        .Select(f => Path.GetFileName(f) + ":" + Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)))));

    [Fact]
    public void QuantizeRefusesToOverwriteItsInput()
    {
        string input = Path.Combine(_dir, "ckpt");
        Directory.CreateDirectory(input);
        foreach (var f in Directory.GetFiles(Fixtures.Dir(Fixture))) File.Copy(f, Path.Combine(input, Path.GetFileName(f)));
        string before = Hash(input);
        CliProcess.AssertCleanError(CliProcess.Run("quantize", input, "-o", Path.Combine(input, "model.safetensors")), "refusing to overwrite");
        CliProcess.AssertCleanError(CliProcess.Run("quantize", input, "-o", input), "is a folder");
        Assert.Equal(before, Hash(input));
    }

    [Fact]
    public void QuantizeIntoAFolderThatCannotBeWrittenLeavesNothing()
    {
        CliProcess.AssertCleanError(CliProcess.Run("quantize", Fixtures.Dir(Fixture), "-o", Path.Combine(_dir, "no", "such", "dir", "x.gguf")), "does not exist");
        // /proc refuses new files even to root, where a chmod'ed folder would not.
        CliProcess.AssertCleanError(CliProcess.Run("quantize", Fixtures.Dir(Fixture), "-o", "/proc/bitmoe-test.gguf"), "/proc/bitmoe-test.gguf");
        Assert.False(File.Exists("/proc/bitmoe-test.gguf"));
    }

    [Fact]
    public void QuantizeKeepsAnExistingOutputWhenItFails()
    {
        string target = Path.Combine(_dir, "keep.gguf");
        File.WriteAllText(target, "previous contents");
        string broken = Path.Combine(_dir, "broken");
        Directory.CreateDirectory(broken);
        foreach (var f in Directory.GetFiles(Fixtures.Dir(Fixture))) File.Copy(f, Path.Combine(broken, Path.GetFileName(f)));
        var bytes = File.ReadAllBytes(Path.Combine(broken, "model.safetensors"));
        File.WriteAllBytes(Path.Combine(broken, "model.safetensors"), bytes[..^64]);
        CliProcess.AssertCleanError(CliProcess.Run("quantize", broken, "-o", target), "model.safetensors", "truncated");
        Assert.Equal("previous contents", File.ReadAllText(target));
        Assert.Single(Directory.GetFiles(_dir, "*keep*"));
    }

    [Fact]
    public void QuantizeWithUnknownTypeOrArch()
    {
        CliProcess.AssertCleanError(CliProcess.Run("quantize", Fixtures.Dir(Fixture), "-o", Path.Combine(_dir, "a.gguf"), "--type", "q4_0"), "--type", "q4_0");
        CliProcess.AssertCleanError(CliProcess.Run("quantize", Fixtures.Dir(Fixture), "-o", Path.Combine(_dir, "a.gguf"), "--arch", "gpt2"), "--arch", "gpt2");
        CliProcess.AssertCleanError(CliProcess.Run("quantize", Fixtures.Dir(Fixture), "-o", Path.Combine(_dir, "a.gguf"), "--arch", "llama"), "--arch llama is not possible");
        Assert.False(File.Exists(Path.Combine(_dir, "a.gguf")));
    }
}
