#!/usr/bin/python3
"""
make_fixtures.py -- deterministic random-weight checkpoints + reference outputs for the
C# engine's tests (tests/fixtures/<name>/). Fixtures are never edited by hand: change this
file and rerun

    /usr/bin/python3 tools/reference/make_fixtures.py [--out tests/fixtures] [--only NAME ...]

Each fixture folder holds:
  config.json, model.safetensors (or shards + model.safetensors.index.json), tokenizer.json
  reference.safetensors  tokens [T] I32, logits_fp [T, V] F32, logits_fakequant [T, V] F32
                         (the latter only for bitnet fixtures)
  reference.json         T, ppl_ctx, ppl_fp, ppl_fakequant, scored_tokens, description, ...
The reference outputs are computed from the checkpoint as written (weights read back from
disk and upcast to float32), so F16/BF16 fixtures are checked on the rounded weights.
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tokenizer"))
import mhmoe  # noqa: E402

T = 48            # reference sequence length
PPL_CTX = 20      # perplexity chunk length: chunks of 20, 20, 8 -> 19 + 19 + 7 = 45 scored
MIN_TOPK_GAP = 1e-3   # router margin, in log-probability (= logit) units, between the k-th
                      # and (k+1)-th expert over every forward recorded (see make_fixture)
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CORPUS = os.path.join(REPO, "tests", "fixtures", "tokenizer_corpus.txt")

# ----------------------------------------------------------------------------------------
# Tokenizer: tools/tokenizer/train_bpe.py (byte-level BPE, HF tokenizer.json) trained on a
# few KB of committed English text; the same tokenizer.json is copied into every fixture.
# ----------------------------------------------------------------------------------------

VOCAB_SIZE = 347   # 256 bytes + 88 merges + 3 specials (<|endoftext|> <|im_start|> <|im_end|>)


def build_tokenizer_json():
    import train_bpe   # tools/tokenizer; needs python3-regex
    counts = train_bpe.count_words([CORPUS], train_bpe.DEFAULT_SPECIALS)
    vocab, merges = train_bpe.train(counts, VOCAB_SIZE, train_bpe.DEFAULT_SPECIALS)
    assert len(vocab) == VOCAB_SIZE
    return train_bpe.to_hf_json(vocab, merges, train_bpe.DEFAULT_SPECIALS)


# ----------------------------------------------------------------------------------------
# The fixtures. Every config lists only what it needs; the rest are spec defaults.
# ----------------------------------------------------------------------------------------

BITNET = {"quant_method": "bitnet"}

FIXTURES = [
    dict(name="dense_f32", dtype="F32", shards=1,
         description="Dense layers only, SwiGLU (silu), multi-head attention, untied lm_head, "
                     "plain float model, F32.",
         config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=96)),
    dict(name="smoe_top1_tied_f16", dtype="F16", shards=1,
         description="Plain sparse MoE (h=1, no head/merge, Mixtral-style), 4 experts top-1, "
                     "GQA 4q/2kv, tied embeddings, plain float model, F16.",
         config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, num_experts=4, num_experts_per_tok=1,
                     moe_intermediate_size=64, tie_word_embeddings=True)),
    dict(name="mhmoe_h2_top2_bitnet", dtype="F32", shards=1,
         description="MH-MoE h=2 with head and merge layers, 6 experts top-2, norm_topk_prob, "
                     "GQA 4q/2kv, silu, untied, bitnet quantization_config (fakequant logits), F32.",
         config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, num_experts=6, num_experts_per_tok=2,
                     moe_intermediate_size=48, moe_num_heads=2,
                     quantization_config=BITNET)),
    dict(name="mhmoe_h4_top3_bias_bf16", dtype="BF16", shards=1,
         description="MH-MoE h=4 with head and merge layers that carry biases "
                     "(moe_head_proj_bias/moe_merge_proj_bias), 8 experts top-3, "
                     "norm_topk_prob false, shared expert, mixed layers (moe_layers [0,2], "
                     "layer 1 dense), plain float model, BF16.",
         config=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=80, moe_layers=[0, 2], num_experts=8,
                     num_experts_per_tok=3, moe_intermediate_size=24, moe_num_heads=4,
                     norm_topk_prob=False, shared_expert_intermediate_size=48,
                     moe_head_proj_bias=True, moe_merge_proj_bias=True)),
    dict(name="bitnet_2b4t_style_bf16", dtype="BF16", shards=1,
         description="BitNet b1.58 2B4T layout: dense, relu2, use_sub_norm (attn_sub_norm, "
                     "ffn_sub_norm), GQA 6q/2kv (group 3), hidden 96, rope_theta 500000, "
                     "tied embeddings, bitnet, BF16.",
         config=dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=6,
                     num_key_value_heads=2, intermediate_size=128, hidden_act="relu2",
                     use_sub_norm=True, rope_theta=500000.0, tie_word_embeddings=True,
                     quantization_config=BITNET)),
    dict(name="mhmoe_relu2_subnorm_sharded_f16", dtype="F16", shards=3,
         description="MH-MoE h=2 (head+merge), relu2 with sub-norms in every FFN (each expert "
                     "and the shared expert have ffn_sub_norm), 4 experts top-2, shared expert, "
                     "mixed layers (moe_layers [1]), bitnet, F16 in 3 shards with "
                     "model.safetensors.index.json.",
         config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=96, moe_layers=[1], num_experts=4,
                     num_experts_per_tok=2, moe_intermediate_size=40, moe_num_heads=2,
                     shared_expert_intermediate_size=32, hidden_act="relu2",
                     use_sub_norm=True, quantization_config=BITNET)),
    dict(name="mixed_headdim_mqa_headonly_f32", dtype="F32", shards=1,
         description="Explicit head_dim 32 != hidden/heads (q width 128 on hidden 64), "
                     "multi-query attention (1 kv head), 3 layers with moe_layers [1], MH-MoE "
                     "h=2 with head layer only (moe_merge_proj false), 4 experts top-2, "
                     "rms_norm_eps 1e-6, plain float model, F32.",
         config=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=1, head_dim=32, intermediate_size=64,
                     moe_layers=[1], num_experts=4, num_experts_per_tok=2,
                     moe_intermediate_size=32, moe_num_heads=2, moe_merge_proj=False,
                     rms_norm_eps=1e-6)),
    dict(name="finegrained_top3_bitnet", dtype="F32", shards=1,
         description="Fine-grained MoE (h=1, 12 experts of width 12, top-3) with a shared "
                     "expert; bitnet with modules_to_not_convert "
                     "[embed_tokens, lm_head, router, shared_expert] so the shared expert "
                     "stays float (substring match on the module name) in fakequant; F32.",
         config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_experts=12, num_experts_per_tok=3, moe_intermediate_size=12,
                     shared_expert_intermediate_size=48,
                     quantization_config={"quant_method": "bitnet",
                                          "modules_to_not_convert": ["embed_tokens", "lm_head",
                                                                     "router", "shared_expert"]})),
    dict(name="mhmoe_h4_mergeonly_top1_tied_bitnet_f16", dtype="F16", shards=1,
         description="MH-MoE h=4 with merge layer only (moe_head_proj false), 6 experts top-1, "
                     "hidden 48 (sub-token width 12), 3 heads of 16, tied embeddings, bitnet, F16.",
         config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                     num_experts=6, num_experts_per_tok=1, moe_intermediate_size=32,
                     moe_num_heads=4, moe_head_proj=False, tie_word_embeddings=True,
                     quantization_config=BITNET)),
]

# ----------------------------------------------------------------------------------------
# Random weights with visible structure: O(1) activations, varied router choices, peaked
# but not degenerate logits.
# ----------------------------------------------------------------------------------------


@torch.no_grad()
def random_init(model, gen):
    c = model.config
    for name, p in model.named_parameters():
        if p.dim() == 1 and name.endswith(".weight"):          # every RMSNorm
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
        elif name.endswith(".bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        elif name == "model.embed_tokens.weight":
            # Tied: it is also lm_head, so keep logits at std ~1.5 (random targets then
            # score ppl ~ V * e^(std^2/2): peaked, but far from one-hot).
            std = 1.5 / math.sqrt(c.hidden_size) if c.tie_word_embeddings else 1.0
            p.copy_(std * torch.randn(p.shape, generator=gen))
        elif name == "lm_head.weight":
            p.copy_(1.5 / math.sqrt(p.shape[1]) * torch.randn(p.shape, generator=gen))
        elif ".router." in name:
            p.copy_(2.0 / math.sqrt(p.shape[1]) * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(1.0 / math.sqrt(p.shape[1]) * torch.randn(p.shape, generator=gen))


def full_config(fx, vocab_size):
    cfg = {"model_type": "mhmoe", "vocab_size": vocab_size}
    cfg.update(fx["config"])
    return cfg


def build(fx, vocab_size, seed):
    """The in-memory float32 model (before any rounding to the file dtype)."""
    cfg = full_config(fx, vocab_size)
    model = mhmoe.MhMoeForCausalLM(cfg)
    random_init(model, torch.Generator().manual_seed(seed))
    model.eval()
    return cfg, model


def min_topk_gap(model):
    """Smallest margin log p_(k) - log p_(k+1) (a router-logit difference) of the last
    forward over all MoE layers."""
    c = model.config
    gap = float("inf")
    for layer in model.model.layers:
        if layer.is_moe and c.num_experts_per_tok < c.num_experts:
            s = layer.mlp.last_router_probs.double().log().sort(dim=-1, descending=True).values
            k = c.num_experts_per_tok
            gap = min(gap, float((s[:, k - 1] - s[:, k]).min()))
    return gap


@torch.no_grad()
def reference_outputs(model, tokens, quantized):
    """Logits and perplexities; also the routing margin over every forward it ran."""
    modes = ["fp", "fakequant"] if quantized else ["fp"]
    out, gap = {}, float("inf")
    for mode in modes:
        out[f"logits_{mode}"] = model(tokens.unsqueeze(0), mode=mode)[0].contiguous()
        gap = min(gap, min_topk_gap(model))
        total, n = 0.0, 0
        for i in range(0, tokens.numel(), PPL_CTX):      # exactly mhmoe.perplexity, batch 1
            ids = tokens[i:i + PPL_CTX].unsqueeze(0)
            logits = model(ids, mode=mode)
            gap = min(gap, min_topk_gap(model))
            logp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
            nll = -logp.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
            total += nll.sum().item()
            n += nll.numel()
        ppl = math.exp(total / n)
        ppl2, _, n2 = mhmoe.perplexity(model, tokens, PPL_CTX, mode)
        assert n2 == n and abs(ppl2 - ppl) <= 1e-12 * ppl, (ppl, ppl2)
        out[f"ppl_{mode}"] = ppl
        out["scored_tokens"] = n
    return out, gap


def make_fixture(fx, index, tok_json, out_root):
    V = len(tok_json["model"]["vocab"])
    d = os.path.join(out_root, fx["name"])
    if os.path.isdir(d):
        shutil.rmtree(d)
    tmp_gap = None
    # Pick the first seed whose routing has a clear top-k margin in every forward we record,
    # so float-rounding differences between implementations cannot flip an expert choice.
    for attempt in range(200):
        seed = 1000 * (index + 1) + attempt
        cfg, model = build(fx, V, seed)
        tokens = torch.randint(0, V, (T,), generator=torch.Generator().manual_seed(seed + 7))
        mhmoe.save_checkpoint(model, cfg, d, dtype=fx["dtype"], shards=fx["shards"])
        _, loaded = mhmoe.load_checkpoint(d)       # the rounded weights, as the engine sees them
        ref, gap = reference_outputs(loaded, tokens, loaded.config.quantized)
        tmp_gap = gap
        if gap >= MIN_TOPK_GAP:
            break
        shutil.rmtree(d)
    else:
        raise RuntimeError(f"{fx['name']}: no seed with top-k gap >= {MIN_TOPK_GAP}")

    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=2)
        f.write("\n")
    tensors = {"tokens": tokens.to(torch.int32), "logits_fp": ref["logits_fp"]}
    if "logits_fakequant" in ref:
        tensors["logits_fakequant"] = ref["logits_fakequant"]
    mhmoe.write_safetensors(os.path.join(d, "reference.safetensors"), tensors,
                            {"generator": "tools/reference/make_fixtures.py"})
    info = {"T": T, "ppl_ctx": PPL_CTX, "ppl_fp": ref["ppl_fp"]}
    if "ppl_fakequant" in ref:
        info["ppl_fakequant"] = ref["ppl_fakequant"]
    info.update({
        "scored_tokens": ref["scored_tokens"],
        "description": fx["description"],
        "dtype": fx["dtype"],
        "shards": fx["shards"],
        "seed": seed,
        "min_topk_gap": tmp_gap if tmp_gap != float("inf") else None,
        "logits_fp_std": float(ref["logits_fp"].std()),
        "num_parameters": sum(p.numel() for p in loaded.parameters()),
    })
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    q = f" ppl_fakequant {info['ppl_fakequant']:.4f}" if "ppl_fakequant" in info else ""
    print(f"{fx['name']:42s} seed {seed} ppl_fp {info['ppl_fp']:.4f}{q} gap {tmp_gap:.2e} "
          f"{size / 1024:.0f} KiB")
    return size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    ap.add_argument("--only", nargs="*", help="regenerate only these fixtures")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(a.out, exist_ok=True)

    tok_json = build_tokenizer_json()

    total = 0
    for i, fx in enumerate(FIXTURES):
        if a.only and fx["name"] not in a.only:
            continue
        total += make_fixture(fx, i, tok_json, a.out)
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
