namespace BitMoe.Engine.Weights;

/// <summary>
/// llama.cpp's names for the tensors of a Llama / Mixtral model, and the row permutation its
/// converter applies to q_proj and k_proj: llama.cpp rotates adjacent pairs (2i, 2i+1) where HF
/// rotates (i, i + head_dim/2), so within each head stored row 2i + j holds HF row j*head_dim/2 + i.
/// </summary>
public static class LlamaLayout
{
    /// <summary>The stored (llama.cpp) row that holds HF row <paramref name="hfRow"/>.</summary>
    public static int StoredRowOf(int hfRow, int headDim)
    {
        int head = hfRow / headDim, p = hfRow % headDim, half = headDim / 2;
        return head * headDim + (p < half ? 2 * p : 2 * (p - half) + 1);
    }

    /// <summary>For every HF row of a [heads * head_dim, in] matrix, its stored row.</summary>
    public static int[] RowOrder(int rows, int headDim)
    {
        var order = new int[rows];
        for (int r = 0; r < rows; r++) order[r] = StoredRowOf(r, headDim);
        return order;
    }

    /// <summary>llama.cpp's name for an HF tensor name of a dense layer, or null for expert tensors and unknown names.</summary>
    public static string? ToLlama(string hf)
    {
        switch (hf)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return "output.weight";
        }
        var parts = hf.Split('.');
        if (parts.Length < 5 || parts[0] != "model" || parts[1] != "layers") return null;
        string blk = $"blk.{parts[2]}";
        string rest = string.Join('.', parts[3..]);
        return rest switch
        {
            "input_layernorm.weight" => $"{blk}.attn_norm.weight",
            "post_attention_layernorm.weight" => $"{blk}.ffn_norm.weight",
            "self_attn.q_proj.weight" => $"{blk}.attn_q.weight",
            "self_attn.k_proj.weight" => $"{blk}.attn_k.weight",
            "self_attn.v_proj.weight" => $"{blk}.attn_v.weight",
            "self_attn.o_proj.weight" => $"{blk}.attn_output.weight",
            "mlp.gate_proj.weight" => $"{blk}.ffn_gate.weight",
            "mlp.up_proj.weight" => $"{blk}.ffn_up.weight",
            "mlp.down_proj.weight" => $"{blk}.ffn_down.weight",
            "mlp.router.weight" => $"{blk}.ffn_gate_inp.weight",
            _ => null,
        };
    }

    /// <summary>Stacked expert tensors: llama.cpp's name for projection <paramref name="proj"/> (gate, up, down) of layer <paramref name="layer"/>.</summary>
    public static string Experts(int layer, string proj) => $"blk.{layer}.ffn_{proj}_exps.weight";

    public static string HfExpert(int layer, int expert, string proj) => $"model.layers.{layer}.mlp.experts.{expert}.{proj}_proj.weight";
}
