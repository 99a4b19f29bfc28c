using System.Runtime.InteropServices;
using System.Text.Json;
using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Engine.Weights;

/// <summary>A linear layer's weight as a file holds it: float rows, or packed ternary rows with their scale.</summary>
public readonly record struct LinearWeight(TensorView? Float, TernaryTensor? Ternary);

/// <summary>
/// The tensors of a model, memory-mapped and looked up by their HF names
/// (model-spec.md section 3), whichever file holds them: a checkpoint folder (model.safetensors or
/// shards named by model.safetensors.index.json) or a GGUF file (mhmoe files use HF names; llama
/// files use llama.cpp's names, stacked experts and permuted q/k rows, which are mapped back here).
/// Layers take the tensors they need with the shape they expect; whatever nobody took is reported.
/// </summary>
public sealed unsafe class ModelWeights : IDisposable
{
    private readonly List<IDisposable> _files = [];
    private readonly List<nint> _native = [];
    private readonly Dictionary<string, TensorView> _float = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TernaryTensor> _ternary = new(StringComparer.Ordinal);
    private readonly HashSet<string> _taken = new(StringComparer.Ordinal);

    public string Source { get; }

    private ModelWeights(string source) => Source = source;

    public bool HasTernary => _ternary.Count > 0;

    public static ModelWeights OpenFolder(string dir)
    {
        var weights = new ModelWeights(dir);
        try
        {
            string single = Path.Combine(dir, "model.safetensors");
            string index = Path.Combine(dir, "model.safetensors.index.json");
            if (File.Exists(single)) weights.AddSafetensors(SafetensorsFile.Open(single));
            else if (File.Exists(index))
            {
                foreach (var shard in ReadIndex(index))
                    weights.AddSafetensors(SafetensorsFile.Open(Path.Combine(dir, shard)));
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

    /// <summary>
    /// The tensors of an open GGUF file (which this object then owns). <paramref name="scales"/> gives
    /// the float32 scale of every ternary tensor by HF name.
    /// </summary>
    public static ModelWeights FromGguf(GgufFile file, ModelConfig config, bool llamaNames, IReadOnlyDictionary<string, float> scales)
    {
        var weights = new ModelWeights(file.Path);
        weights._files.Add(file);
        try
        {
            var llamaToHf = llamaNames ? LlamaToHf(config.NumLayers) : null;
            foreach (var t in file.Tensors.Values)
            {
                if (llamaToHf == null) weights.AddGguf(t, t.Name, scales, null, 0, 1);
                else weights.AddLlamaTensor(t, config, scales, llamaToHf);
            }
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

    private void AddSafetensors(SafetensorsFile file)
    {
        _files.Add(file);
        foreach (var (name, t) in file.Tensors) AddFloat(name, t);
    }

    private void AddFloat(string name, TensorView t)
    {
        if (_float.ContainsKey(name) || _ternary.ContainsKey(name))
            throw new BitMoeException($"{t.File}: tensor '{name}' appears twice");
        _float[name] = t;
    }

    /// <summary>
    /// Adds a GGUF tensor under HF name <paramref name="hfName"/>; for a slice of a stacked tensor,
    /// <paramref name="part"/> of <paramref name="parts"/> equal slices along the outermost dimension.
    /// </summary>
    private void AddGguf(GgufTensor t, string hfName, IReadOnlyDictionary<string, float> scales, int[]? rowOrder, int part, int parts)
    {
        long[] shape = t.Shape;
        if (parts > 1) shape = shape[1..];
        long sliceBytes = t.ByteSize / parts;
        byte* data = t.Data + sliceBytes * part;

        if (TernaryGguf.TryFormat(t.TypeId, out var format))
        {
            if (shape.Length != 2) throw new BitMoeException($"{t.File}: ternary tensor '{t.Name}' has {shape.Length} dimensions, expected 2");
            if (!scales.TryGetValue(hfName, out float scale))
                throw new BitMoeException($"{t.File}: ternary tensor '{t.Name}' has no float32 scale in bitmoe.ternary_scales (files not written by BitMoe are not supported)");
            if (_float.ContainsKey(hfName) || _ternary.ContainsKey(hfName))
                throw new BitMoeException($"{t.File}: tensor '{hfName}' appears twice");
            _ternary[hfName] = new TernaryTensor
            {
                Name = hfName, File = t.File, Format = format, Rows = checked((int)shape[0]), Cols = checked((int)shape[1]),
                Data = data, Scale = scale, RowOrder = rowOrder,
            };
            return;
        }

        var view = t.ToTensorView();
        var sliced = new TensorView { Name = hfName, File = t.File, TypeName = view.TypeName, Shape = shape, Data = data, ByteLength = sliceBytes, IsFileMapped = view.IsFileMapped };
        if (rowOrder != null) sliced = Reordered(sliced, rowOrder);
        AddFloat(hfName, sliced);
    }

    /// <summary>A copy of a float matrix with its rows put back in HF order (small: only q/k of llama files in float).</summary>
    private TensorView Reordered(TensorView t, int[] rowOrder)
    {
        long rowBytes = t.ByteLength / t.Shape[0];
        var buffer = (byte*)NativeMemory.Alloc((nuint)t.ByteLength);
        _native.Add((nint)buffer);
        for (int r = 0; r < rowOrder.Length; r++)
            Buffer.MemoryCopy(t.Data + rowOrder[r] * rowBytes, buffer + r * rowBytes, rowBytes, rowBytes);
        return new TensorView { Name = t.Name, File = t.File, TypeName = t.TypeName, Shape = t.Shape, Data = buffer, ByteLength = t.ByteLength };
    }

    private void AddLlamaTensor(GgufTensor t, ModelConfig c, IReadOnlyDictionary<string, float> scales, Dictionary<string, string> llamaToHf)
    {
        var parts = t.Name.Split('.');
        if (parts.Length == 4 && parts[0] == "blk" && parts[2].EndsWith("_exps") && int.TryParse(parts[1], out int layer))
        {
            string proj = parts[2]["ffn_".Length..^"_exps".Length];
            if (t.Shape.Length != 3 || t.Shape[0] != c.NumExperts)
                throw new BitMoeException($"{t.File}: tensor '{t.Name}' has shape {t.DimsText}, expected {c.NumExperts} stacked experts");
            for (int e = 0; e < c.NumExperts; e++) AddGguf(t, LlamaLayout.HfExpert(layer, e, proj), scales, null, e, c.NumExperts);
            return;
        }
        string hf = llamaToHf.GetValueOrDefault(t.Name)
            ?? throw new BitMoeException($"{t.File}: unexpected tensor '{t.Name}' for architecture llama");
        int[]? order = null;
        if (hf.EndsWith("self_attn.q_proj.weight")) order = LlamaLayout.RowOrder(c.QDim, c.HeadDim);
        else if (hf.EndsWith("self_attn.k_proj.weight")) order = LlamaLayout.RowOrder(c.KvDim, c.HeadDim);
        AddGguf(t, hf, scales, order, 0, 1);
    }

    /// <summary>llama.cpp name -> HF name for every non-expert tensor a model of <paramref name="layers"/> layers can have.</summary>
    private static Dictionary<string, string> LlamaToHf(int layers)
    {
        var names = new List<string> { "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight" };
        string[] perLayer = ["input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
            "self_attn.v_proj.weight", "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight", "mlp.router.weight"];
        for (int i = 0; i < layers; i++) names.AddRange(perLayer.Select(p => $"model.layers.{i}.{p}"));
        return names.ToDictionary(n => LlamaLayout.ToLlama(n)!, n => n, StringComparer.Ordinal);
    }

    public bool Contains(string name) => _float.ContainsKey(name) || _ternary.ContainsKey(name);

    /// <summary>The float tensor <paramref name="name"/>, which must exist with exactly <paramref name="shape"/>.</summary>
    public TensorView Take(string name, params long[] shape)
    {
        if (_ternary.TryGetValue(name, out var tt))
            throw new BitMoeException($"{tt.File}: tensor '{name}' is ternary ({TernaryGguf.Name(tt.Format)}); expected float values");
        if (!_float.TryGetValue(name, out var t))
            throw new BitMoeException($"{Source}: missing tensor '{name}' (expected shape [{string.Join(", ", shape)}])");
        if (!t.Shape.SequenceEqual(shape))
            throw new BitMoeException($"{t.File}: tensor '{name}' has shape {t.ShapeText}, expected [{string.Join(", ", shape)}]");
        _ = t.FloatType; // rejects integer tensors where weights are expected
        _taken.Add(name);
        return t;
    }

    /// <summary>The weight of a linear layer [rows, cols]: float or packed ternary.</summary>
    public LinearWeight TakeLinear(string name, int rows, int cols)
    {
        if (!_ternary.TryGetValue(name, out var t)) return new LinearWeight(Take(name, rows, cols), null);
        if (t.Rows != rows || t.Cols != cols)
            throw new BitMoeException($"{t.File}: tensor '{name}' has shape [{t.Rows}, {t.Cols}], expected [{rows}, {cols}]");
        _taken.Add(name);
        return new LinearWeight(null, t);
    }

    /// <summary>Fails on the first tensor that no layer asked for: a config/checkpoint mismatch.</summary>
    public void CheckAllTaken()
    {
        foreach (var (name, t) in _float)
            if (!_taken.Contains(name))
                throw new BitMoeException($"{t.File}: unexpected tensor '{name}' (not part of the model the config describes)");
        foreach (var (name, t) in _ternary)
            if (!_taken.Contains(name))
                throw new BitMoeException($"{t.File}: unexpected tensor '{name}' (not part of the model the config describes)");
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
        foreach (var p in _native) NativeMemory.Free((void*)p);
        _native.Clear();
    }
}
