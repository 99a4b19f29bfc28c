using System.CommandLine;
using BitMoe.Engine;
using BitMoe.Engine.Gguf;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Cli;

/// <summary><c>bitmoe inspect</c>: what a GGUF file or checkpoint folder holds.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("model") { Description = "a .gguf file or a checkpoint folder" };
        var cmd = new Command("inspect", "Print metadata, the tensor table (name, type, shape, bytes) and parameter counts.") { path };
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            string p = r.GetValue(path)!;
            if (Directory.Exists(p)) InspectFolder(p);
            else if (File.Exists(p)) InspectGguf(p);
            else throw new BitMoeException($"{p}: model path does not exist");
            return 0;
        }));
        return cmd;
    }

    private sealed record Row(string Name, string Type, string Shape, long Bytes, long Elements, bool Ternary);

    private static void InspectGguf(string path)
    {
        using var f = GgufFile.Open(path, TernaryGguf.Types);
        Console.WriteLine($"{path}: GGUF v{f.Version}, {f.Metadata.Count} metadata keys, {f.Tensors.Count} tensors, {f.FileLength:N0} bytes");
        Console.WriteLine();
        Console.WriteLine("metadata:");
        foreach (var (key, value) in f.Metadata) Console.WriteLine($"  {key,-48} {value.TypeText,-16} {Shorten(value.ToString())}");
        var rows = f.Tensors.Values.Select(t => new Row(t.Name, t.TypeName, "[" + string.Join(", ", t.Shape) + "]", t.ByteSize, t.ElementCount,
            TernaryGguf.TryFormat(t.TypeId, out _))).ToList();
        PrintTensors(rows);
        var config = GgufModelMetadata.ReadConfig(f, out _);
        PrintParameters(config);
    }

    private static void InspectFolder(string dir)
    {
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        Console.WriteLine($"{dir}: checkpoint folder");
        Console.WriteLine();
        Console.WriteLine("config (defaults applied):");
        foreach (var (key, value) in GgufModelMetadata.ToJson(config)) Console.WriteLine($"  {key,-36} {Shorten(value?.ToJsonString() ?? "null")}");
        using var weights = Engine.Weights.ModelWeights.OpenFolder(dir);
        var rows = ModelTensors.Enumerate(config).Where(t => weights.Contains(t.Name)).Select(t =>
        {
            var v = weights.Take(t.Name, t.Shape);
            return new Row(t.Name, v.TypeName, v.ShapeText, v.ByteLength, v.ElementCount, false);
        }).ToList();
        PrintTensors(rows);
        PrintParameters(config);
    }

    private static void PrintTensors(List<Row> rows)
    {
        Console.WriteLine();
        int width = Math.Max(40, rows.Count == 0 ? 0 : rows.Max(r => r.Name.Length));
        Console.WriteLine($"{"tensor".PadRight(width)}  {"type",-16} {"shape",-20} {"bytes",14} {"bits/weight",11}");
        foreach (var r in rows)
            Console.WriteLine($"{r.Name.PadRight(width)}  {r.Type,-16} {r.Shape,-20} {r.Bytes,14:N0} {r.Bytes * 8.0 / Math.Max(1, r.Elements),11:F4}");
        var ternary = rows.Where(r => r.Ternary).ToList();
        Console.WriteLine();
        Console.WriteLine($"tensors: {rows.Count}, bytes: {rows.Sum(r => r.Bytes):N0}");
        if (ternary.Count > 0)
        {
            long w = ternary.Sum(r => r.Elements), b = ternary.Sum(r => r.Bytes);
            Console.WriteLine($"ternary: {ternary.Count} tensors, {w:N0} weights in {b:N0} bytes = {b * 8.0 / w:F4} bits/weight (block scales included)");
        }
    }

    private static void PrintParameters(ModelConfig config)
    {
        var (total, active) = ModelTensors.CountParameters(config);
        Console.WriteLine($"parameters: {total:N0} total, {active:N0} active per token " +
                          $"(routed experts counted as the min(E, h*k) = {Math.Min(config.NumExperts, config.MoeNumHeads * config.NumExpertsPerTok)} a token can reach per MoE layer)");
    }

    private static string Shorten(string s) => s.Length <= 100 ? s : s[..97] + "...";
}
