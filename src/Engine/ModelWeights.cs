using System.Text.Json;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Engine;

/// <summary>
/// The tensors of a checkpoint folder (model.safetensors, or shards named by
/// model.safetensors.index.json), memory-mapped and looked up by name. Layers take the tensors
/// they need with the shape they expect; whatever nobody took is reported as unexpected.
/// </summary>
public sealed class ModelWeights : IDisposable
{
    private readonly List<SafetensorsFile> _files = [];
    private readonly Dictionary<string, TensorView> _tensors = new(StringComparer.Ordinal);
    private readonly HashSet<string> _taken = new(StringComparer.Ordinal);

    public string Source { get; }

    private ModelWeights(string source) => Source = source;

    public static ModelWeights OpenFolder(string dir)
    {
        var weights = new ModelWeights(dir);
        try
        {
            string single = Path.Combine(dir, "model.safetensors");
            string index = Path.Combine(dir, "model.safetensors.index.json");
            if (File.Exists(single)) weights.Add(SafetensorsFile.Open(single));
            else if (File.Exists(index))
            {
                foreach (var shard in ReadIndex(index))
                    weights.Add(SafetensorsFile.Open(Path.Combine(dir, shard)));
            }
            else throw new BitMoeException($"{dir}: no model.safetensors or model.safetensors.index.json in the checkpoint folder");
            return weights;
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    private static IEnumerable<string> ReadIndex(string index)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new BitMoeException($"{index}: missing 'weight_map' object");
            return map.EnumerateObject().Select(p => p.Value.GetString() ?? "").Distinct().Order().ToList();
        }
        catch (JsonException e) { throw new BitMoeException($"{index}: invalid JSON ({e.Message})"); }
    }

    private void Add(SafetensorsFile file)
    {
        _files.Add(file);
        foreach (var (name, t) in file.Tensors)
        {
            if (!_tensors.TryAdd(name, t))
                throw new BitMoeException($"{file.Path}: tensor '{name}' also appears in {_tensors[name].File}");
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>The tensor <paramref name="name"/>, which must exist with exactly <paramref name="shape"/>.</summary>
    public TensorView Take(string name, params long[] shape)
    {
        if (!_tensors.TryGetValue(name, out var t))
            throw new BitMoeException($"{Source}: missing tensor '{name}' (expected shape [{string.Join(", ", shape)}])");
        if (!t.Shape.SequenceEqual(shape))
            throw new BitMoeException($"{t.File}: tensor '{name}' has shape {t.ShapeText}, expected [{string.Join(", ", shape)}]");
        _ = t.FloatType; // rejects integer tensors where weights are expected
        _taken.Add(name);
        return t;
    }

    /// <summary>Fails on the first tensor that no layer asked for: a config/checkpoint mismatch.</summary>
    public void CheckAllTaken()
    {
        foreach (var (name, t) in _tensors)
            if (!_taken.Contains(name))
                throw new BitMoeException($"{t.File}: unexpected tensor '{name}' (not part of the model that config.json describes)");
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
