using System.Text.Json;
using BitMoe.Quant.Formats;

namespace BitMoe.Tests;

/// <summary>The checkpoints and PyTorch reference outputs written by tools/reference/make_fixtures.py.</summary>
public static class Fixtures
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "fixtures");

    public static string Dir(string name) => Path.Combine(Root, name);

    /// <summary>Every fixture folder that holds a checkpoint and reference outputs.</summary>
    public static IEnumerable<string> CheckpointNames() =>
        Directory.GetDirectories(Root)
            .Where(d => File.Exists(Path.Combine(d, "reference.json")))
            .Select(Path.GetFileName)
            .Order()!;

    public static TheoryData<string> All()
    {
        var data = new TheoryData<string>();
        foreach (var n in CheckpointNames()) data.Add(n);
        return data;
    }

    public static TheoryData<string> BitNet()
    {
        var data = new TheoryData<string>();
        foreach (var n in CheckpointNames().Where(n => Reference.Load(n).LogitsFakeQuant != null)) data.Add(n);
        return data;
    }
}

public sealed record Reference(int[] Tokens, float[] LogitsFp, float[]? LogitsFakeQuant, int Vocab, int PplCtx,
    double PplFp, double? PplFakeQuant, int ScoredTokens)
{
    public static Reference Load(string name)
    {
        string dir = Fixtures.Dir(name);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json")));
        var root = doc.RootElement;
        using var st = SafetensorsFile.Open(Path.Combine(dir, "reference.safetensors"));
        var tokens = st.Tensors["tokens"].ToInt32Array();
        var fp = st.Tensors["logits_fp"];
        float[]? fq = st.Tensors.TryGetValue("logits_fakequant", out var q) ? q.ToFloatArray() : null;
        return new Reference(tokens, fp.ToFloatArray(), fq, (int)fp.Shape[1], root.GetProperty("ppl_ctx").GetInt32(),
            root.GetProperty("ppl_fp").GetDouble(),
            root.TryGetProperty("ppl_fakequant", out var pq) && pq.ValueKind == JsonValueKind.Number ? pq.GetDouble() : null,
            root.GetProperty("scored_tokens").GetInt32());
    }
}
