using System.Diagnostics;
using BitMoe.Engine.Gguf;
using BitMoe.Engine.Tokenization;
using BitMoe.Engine.Weights;
using BitMoe.Kernels;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Engine.Conversion;

/// <summary>How quantize stores the linear layers: ternary in tq2_0 or tq1_0, or everything in F16.</summary>
public enum OutputType { Tq2, Tq1, F16 }

public sealed record QuantizeOptions(OutputType Type, string Architecture = "auto");

public sealed record QuantizeSummary(string Architecture, int Tensors, long Parameters, long TernaryWeights, long TernaryBytes, long FileBytes, double Seconds)
{
    /// <summary>Bits per ternary weight, block scales included.</summary>
    public double BitsPerTernaryWeight => TernaryWeights == 0 ? 0 : TernaryBytes * 8.0 / TernaryWeights;
}

/// <summary>
/// Turns a checkpoint folder into one GGUF file: BitNet linear layers become packed ternary rows
/// (absmean, one float32 scale per tensor kept in the metadata), the rest keeps its float type,
/// config and tokenizer go into the metadata. A plain Llama / Mixtral-shaped model is written as
/// architecture llama with llama.cpp's names (q/k rows permuted, experts stacked) so llama.cpp loads it.
/// </summary>
public static unsafe class Quantizer
{
    public static QuantizeSummary Run(string inputDir, string outputPath, QuantizeOptions options, Action<int, int, string>? progress = null)
    {
        var clock = Stopwatch.StartNew();
        CheckPaths(inputDir, outputPath);
        var config = ModelConfig.Load(Path.Combine(inputDir, "config.json"));
        var tokenizer = TextTokenizer.Load(Path.Combine(inputDir, "tokenizer.json"));
        if (tokenizer.VocabSize > config.VocabSize)
            throw new BitMoeException($"{inputDir}: the tokenizer has {tokenizer.VocabSize} tokens but vocab_size is {config.VocabSize}");
        if (options.Type != OutputType.F16 && !config.IsBitNet)
            throw new BitMoeException($"{inputDir}: --type {TypeName(options.Type)} needs a BitNet checkpoint (config.json has no bitnet quantization_config); use --type f16");

        string arch = ChooseArchitecture(config, options, inputDir);
        using var weights = ModelWeights.OpenFolder(inputDir);
        var tensors = ModelTensors.Enumerate(config).ToList();
        var views = tensors.ToDictionary(t => t.Name, t => weights.Take(t.Name, t.Shape));
        weights.CheckAllTaken();

        var format = options.Type == OutputType.Tq1 ? TernaryFormat.Tq1 : TernaryFormat.Tq2;
        bool Ternary(ModelTensor t) => options.Type != OutputType.F16 && t.Role == TensorRole.Linear && config.IsQuantized(t.Module);

        // Scales first: the metadata, which holds them, precedes the tensor data in the file.
        var scales = new Dictionary<string, float>(StringComparer.Ordinal);
        foreach (var t in tensors.Where(Ternary))
        {
            var v = views[t.Name];
            scales[t.Name] = Ternarizer.Scale(Ternarizer.MeanAbs(v.Data, v.FloatType, t.Shape[0], (int)t.Shape[1]));
        }

        var writer = new GgufWriter(TernaryGguf.Types);
        writer.Add("general.name", GgufValue.String(Path.GetFileName(Path.GetFullPath(inputDir).TrimEnd('/'))));
        GgufModelMetadata.WriteConfig(writer, config, arch);
        writer.Add("general.file_type", GgufValue.UInt32(options.Type switch { OutputType.Tq1 => 36u, OutputType.Tq2 => 37u, _ => 1u }));
        writer.Add("general.quantized_by", GgufValue.String("bitmoe quantize"));
        GgufModelMetadata.WriteTokenizer(writer, tokenizer.Data, config.VocabSize, config.EosTokenId ?? tokenizer.EndOfTextId);
        if (scales.Count > 0)
        {
            writer.Add(GgufModelMetadata.ScaleNamesKey, GgufValue.Array(scales.Keys.ToArray()));
            writer.Add(GgufModelMetadata.ScalesKey, GgufValue.Array(scales.Values.ToArray()));
        }

        long ternaryWeights = 0, ternaryBytes = 0, parameters = tensors.Sum(t => t.Elements);
        var plan = arch == "llama" ? LlamaPlan(config, tensors) : tensors.Select(t => new StoredTensor(t.Name, [t], null)).ToList();
        foreach (var stored in plan)
        {
            var first = stored.Parts[0];
            long[] shape = stored.Parts.Count > 1 ? [stored.Parts.Count, .. first.Shape] : first.Shape;
            long[] dims = shape.Reverse().ToArray();
            var parts = stored.Parts.Select(p => views[p.Name]).ToArray();
            if (Ternary(first))
            {
                int rows = (int)first.Shape[0], cols = (int)first.Shape[1];
                uint typeId = TernaryGguf.TypeId(format, cols);
                ternaryWeights += first.Elements * parts.Length;
                ternaryBytes += (long)TernaryGguf.RowBytes(format, cols) * rows * parts.Length;
                var partScales = stored.Parts.Select(p => scales[p.Name]).ToArray();
                writer.AddTensor(stored.Name, dims, typeId, s => WriteTernary(s, parts, partScales, rows, cols, format, stored.RowOrder));
            }
            else
            {
                uint typeId = FloatStorage(first, parts[0].FloatType, options.Type);
                writer.AddTensor(stored.Name, dims, typeId, s => WriteFloat(s, parts, typeId, stored.RowOrder));
            }
        }
        writer.Write(outputPath, progress);
        return new QuantizeSummary(arch, plan.Count, parameters, ternaryWeights, ternaryBytes, new FileInfo(outputPath).Length, clock.Elapsed.TotalSeconds);
    }

    public static string TypeName(OutputType t) => t switch { OutputType.Tq2 => "tq2_0", OutputType.Tq1 => "tq1_0", _ => "f16" };

    public static OutputType ParseType(string text) => text.Trim().ToLowerInvariant() switch
    {
        "tq2_0" or "tq2" => OutputType.Tq2,
        "tq1_0" or "tq1" => OutputType.Tq1,
        "f16" => OutputType.F16,
        _ => throw new BitMoeException($"--type: unknown type '{text}' (expected tq2_0, tq1_0 or f16)"),
    };

    /// <summary>Refuses an output that would overwrite the input: the folder itself, or a file quantize reads from it.</summary>
    private static void CheckPaths(string inputDir, string outputPath)
    {
        if (!Directory.Exists(inputDir))
            throw new BitMoeException(File.Exists(inputDir) ? $"{inputDir}: expected a checkpoint folder" : $"{inputDir}: input folder does not exist");
        string output = Path.GetFullPath(outputPath);
        string input = Path.GetFullPath(inputDir).TrimEnd(Path.DirectorySeparatorChar);
        if (output == input || Directory.Exists(output))
            throw new BitMoeException($"{outputPath}: the output is a folder; give a file name such as model.gguf");
        if (Path.GetDirectoryName(output) != input) return;
        string name = Path.GetFileName(output);
        if (name is "config.json" or "tokenizer.json" or "model.safetensors.index.json" || name.EndsWith(".safetensors"))
            throw new BitMoeException($"{outputPath}: refusing to overwrite a file of the input checkpoint {inputDir}");
    }

    /// <summary>llama when llama.cpp can run the model as it is, else mhmoe; an explicit llama that cannot be is an error.</summary>
    private static string ChooseArchitecture(ModelConfig c, QuantizeOptions o, string inputDir)
    {
        string arch = o.Architecture.Trim().ToLowerInvariant();
        if (arch is not ("auto" or "mhmoe" or "llama")) throw new BitMoeException($"--arch: unknown architecture '{o.Architecture}' (expected auto, mhmoe or llama)");
        if (arch == "mhmoe") return arch;
        string? why = WhyNotLlama(c, o.Type);
        if (why == null) return "llama";
        if (arch == "llama") throw new BitMoeException($"{inputDir}: --arch llama is not possible: {why}");
        return "mhmoe";
    }

    /// <summary>The reason llama.cpp's llama architecture cannot express this model, or null when it can.</summary>
    public static string? WhyNotLlama(ModelConfig c, OutputType type)
    {
        if (c.HiddenAct != Activation.Silu) return "hidden_act is not silu";
        if (c.UseSubNorm) return "the model has BitNet sub-norms";
        if (c.AnyMoe)
        {
            if (c.IsMoeLayer.Any(b => !b)) return "dense and MoE layers are mixed";
            if (c.MoeNumHeads != 1 || c.MoeHeadProj || c.MoeMergeProj) return "the MoE layers are multi-head (h > 1 or head/merge layers)";
            if (c.SharedExpertIntermediateSize > 0) return "the model has a shared expert";
            if (!c.NormTopkProb) return "norm_topk_prob is false (llama.cpp always renormalises the top-k weights)";
            if (c.IsQuantized($"model.layers.0.mlp.router")) return "the router is quantized";
        }
        if (type != OutputType.F16 && c.IsBitNet)
        {
            var odd = ModelTensors.Enumerate(c).FirstOrDefault(t => t.Role == TensorRole.Linear && c.IsQuantized(t.Module) && t.Shape[1] % 256 != 0);
            if (odd != null) return $"'{odd.Name}' has rows of {odd.Shape[1]} weights, not a multiple of 256 (llama.cpp's TQ block)";
            if (c.IsQuantized("model.embed_tokens")) return "the token embedding is quantized";
        }
        return null;
    }

    /// <summary>One tensor in the file: one spec tensor, or experts stacked along a new outer dimension.</summary>
    private sealed record StoredTensor(string Name, IReadOnlyList<ModelTensor> Parts, int[]? RowOrder);

    private static List<StoredTensor> LlamaPlan(ModelConfig c, List<ModelTensor> tensors)
    {
        var plan = new List<StoredTensor>();
        foreach (var t in tensors.Where(t => t.Expert < 0))
        {
            int[]? order = null;
            if (t.Name.EndsWith("self_attn.q_proj.weight") || t.Name.EndsWith("self_attn.k_proj.weight"))
                order = StoredToHf((int)t.Shape[0], c.HeadDim);
            plan.Add(new StoredTensor(LlamaLayout.ToLlama(t.Name)!, [t], order));
        }
        foreach (var layer in tensors.Where(t => t.Expert >= 0).GroupBy(t => t.Layer))
            foreach (var proj in new[] { "gate", "up", "down" })
                plan.Add(new StoredTensor(LlamaLayout.Experts(layer.Key, proj),
                    layer.Where(t => t.Name.EndsWith($".{proj}_proj.weight")).OrderBy(t => t.Expert).ToList(), null));
        return plan;
    }

    /// <summary>For every stored (llama.cpp) row, the HF row it holds.</summary>
    private static int[] StoredToHf(int rows, int headDim)
    {
        var order = new int[rows];
        for (int hf = 0; hf < rows; hf++) order[LlamaLayout.StoredRowOf(hf, headDim)] = hf;
        return order;
    }

    private static uint FloatStorage(ModelTensor t, DType source, OutputType type)
    {
        // Norms and biases stay float32 (llama.cpp expects F32 norms); with --type f16 the matrices
        // become F16; otherwise the unquantized matrices keep the checkpoint's own float type, so the
        // packed file computes exactly what the engine computes on the checkpoint.
        if (t.Role is TensorRole.Norm or TensorRole.Bias) return (uint)GgmlType.F32;
        if (type == OutputType.F16) return (uint)GgmlType.F16;
        return source switch
        {
            DType.F32 => (uint)GgmlType.F32,
            DType.F16 => (uint)GgmlType.F16,
            _ => (uint)GgmlType.BF16,
        };
    }

    private static void WriteFloat(Stream s, TensorView[] parts, uint typeId, int[]? rowOrder)
    {
        foreach (var v in parts)
        {
            long rows = v.Shape.Length == 1 ? 1 : v.Shape[0];
            int cols = (int)(v.ElementCount / rows);
            var row = new float[cols];
            var bytes = new byte[cols * (typeId == (uint)GgmlType.F32 ? 4 : 2)];
            for (long r = 0; r < rows; r++)
            {
                long src = rowOrder?[r] ?? r;
                FloatGemv.ToSingle(v.Data, v.FloatType, src * cols, row);
                switch (typeId)
                {
                    case (uint)GgmlType.F32:
                        System.Runtime.InteropServices.MemoryMarshal.AsBytes(row.AsSpan()).CopyTo(bytes);
                        break;
                    case (uint)GgmlType.F16:
                        var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(bytes.AsSpan());
                        System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(row, halves);
                        break;
                    default:
                        var bf = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
                        for (int i = 0; i < cols; i++) bf[i] = Bf16.FromSingle(row[i]);
                        break;
                }
                s.Write(bytes);
            }
        }
    }

    private static void WriteTernary(Stream s, TensorView[] parts, float[] scales, int rows, int cols, TernaryFormat format, int[]? rowOrder)
    {
        var row = new float[cols];
        var q = new sbyte[cols];
        var packed = new byte[TernaryGguf.RowBytes(format, cols)];
        for (int p = 0; p < parts.Length; p++)
        {
            var v = parts[p];
            float scale = scales[p];
            for (int r = 0; r < rows; r++)
            {
                int src = rowOrder?[r] ?? r;
                FloatGemv.ToSingle(v.Data, v.FloatType, (long)src * cols, row);
                for (int i = 0; i < cols; i++) q[i] = Ternarizer.Quantize(row[i], scale);
                // d = 1 / s_w: the magnitude of a +-1 weight, which is what llama.cpp's block scale means.
                TernaryGguf.PackRow(format, q, 1f / scale, packed);
                s.Write(packed);
            }
        }
    }
}
