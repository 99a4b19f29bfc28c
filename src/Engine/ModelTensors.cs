namespace BitMoe.Engine;

/// <summary>What a tensor is for, which decides how quantize stores it.</summary>
public enum TensorRole { Embedding, Linear, Norm, Bias }

/// <summary>One tensor of the model-spec.md layout, by its HF name.</summary>
/// <param name="Module">The module name (the tensor name without ".weight"/".bias"), used for modules_to_not_convert.</param>
/// <param name="Expert">The routed expert the tensor belongs to, or -1.</param>
public sealed record ModelTensor(string Name, long[] Shape, TensorRole Role, string Module, int Layer, int Expert)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Every tensor a config implies, in the spec's names and shapes (section 3): the single list that
/// quantize writes from and inspect counts parameters with.
/// </summary>
public static class ModelTensors
{
    public static IEnumerable<ModelTensor> Enumerate(ModelConfig c)
    {
        int d = c.HiddenSize;
        yield return new("model.embed_tokens.weight", [c.VocabSize, d], TensorRole.Embedding, "model.embed_tokens", -1, -1);
        for (int i = 0; i < c.NumLayers; i++)
        {
            string p = $"model.layers.{i}";
            yield return Norm($"{p}.input_layernorm", d, i);
            yield return Linear($"{p}.self_attn.q_proj", c.QDim, d, i);
            yield return Linear($"{p}.self_attn.k_proj", c.KvDim, d, i);
            yield return Linear($"{p}.self_attn.v_proj", c.KvDim, d, i);
            if (c.UseSubNorm) yield return Norm($"{p}.self_attn.attn_sub_norm", c.QDim, i);
            yield return Linear($"{p}.self_attn.o_proj", d, c.QDim, i);
            yield return Norm($"{p}.post_attention_layernorm", d, i);
            if (!c.IsMoeLayer[i])
            {
                foreach (var t in Ffn($"{p}.mlp", d, c.IntermediateSize, c.UseSubNorm, i, -1)) yield return t;
                continue;
            }
            if (c.MoeHeadProj)
            {
                yield return Linear($"{p}.mlp.head_proj", d, d, i);
                if (c.MoeHeadProjBias) yield return new($"{p}.mlp.head_proj.bias", [d], TensorRole.Bias, $"{p}.mlp.head_proj", i, -1);
            }
            if (c.MoeMergeProj)
            {
                yield return Linear($"{p}.mlp.merge_proj", d, d, i);
                if (c.MoeMergeProjBias) yield return new($"{p}.mlp.merge_proj.bias", [d], TensorRole.Bias, $"{p}.mlp.merge_proj", i, -1);
            }
            yield return Linear($"{p}.mlp.router", c.NumExperts, c.SubTokenDim, i);
            for (int e = 0; e < c.NumExperts; e++)
                foreach (var t in Ffn($"{p}.mlp.experts.{e}", c.SubTokenDim, c.MoeIntermediateSize, c.UseSubNorm, i, e)) yield return t;
            if (c.SharedExpertIntermediateSize > 0)
                foreach (var t in Ffn($"{p}.mlp.shared_expert", d, c.SharedExpertIntermediateSize, c.UseSubNorm, i, -1)) yield return t;
        }
        yield return Norm("model.norm", d, -1);
        if (!c.TieWordEmbeddings) yield return new("lm_head.weight", [c.VocabSize, d], TensorRole.Linear, "lm_head", -1, -1);
    }

    private static ModelTensor Linear(string module, int rows, int cols, int layer, int expert = -1) =>
        new(module + ".weight", [rows, cols], TensorRole.Linear, module, layer, expert);

    private static ModelTensor Norm(string module, int size, int layer) =>
        new(module + ".weight", [size], TensorRole.Norm, module, layer, -1);

    private static IEnumerable<ModelTensor> Ffn(string prefix, int width, int hidden, bool subNorm, int layer, int expert)
    {
        yield return Linear($"{prefix}.gate_proj", hidden, width, layer, expert);
        yield return Linear($"{prefix}.up_proj", hidden, width, layer, expert);
        if (subNorm) yield return new($"{prefix}.ffn_sub_norm.weight", [hidden], TensorRole.Norm, $"{prefix}.ffn_sub_norm", layer, expert);
        yield return Linear($"{prefix}.down_proj", width, hidden, layer, expert);
    }

    /// <summary>
    /// Parameters in total, and those a token touches: all but the routed experts, plus the experts
    /// one token can reach per MoE layer, min(E, h * k) (each of its h sub-tokens picks k).
    /// </summary>
    public static (long Total, long Active) CountParameters(ModelConfig c)
    {
        var all = Enumerate(c).ToList();
        long total = all.Sum(t => t.Elements);
        long expertParams = all.Where(t => t.Expert >= 0).Sum(t => t.Elements);
        long moeLayers = c.IsMoeLayer.Count(b => b);
        if (moeLayers == 0) return (total, total);
        long perExpert = expertParams / (moeLayers * c.NumExperts);
        long reachable = Math.Min(c.NumExperts, (long)c.MoeNumHeads * c.NumExpertsPerTok);
        return (total, total - expertParams + moeLayers * reachable * perExpert);
    }
}
