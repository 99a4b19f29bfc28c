#!/usr/bin/python3
"""
mhmoe.py -- the PyTorch reference of BitMoe's model contract (shared/docs/model-spec.md).

One file, read top to bottom:
  1. config       load_config(dict) -> Config, every default of the spec table
  2. BitLinear    the one place that knows full precision vs fake-quant (BitNet b1.58)
  3. layers       RMSNorm, RoPE, attention, dense FFN, MH-MoE layer
  4. the model    MhMoeForCausalLM: state_dict keys are exactly the spec's tensor names
  5. checkpoints  hand-written safetensors reader/writer (F32/F16/BF16, sharded or not)
  6. evaluation   perplexity exactly as the fixtures define it
  7. CLI          logits / perplexity on a checkpoint folder

It is both the oracle the C# engine is tested against and the model the training tools
train, so it computes in float32 everywhere and keeps the fake-quant formulas exact in
eval mode (straight-through estimator only while module.training is True).

Run with the Debian interpreter (/usr/bin/python3, torch 1.13). No third-party packages
beyond torch (numpy is optional and not used).
"""
import argparse
import json
import math
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------
# 1. Config
# ----------------------------------------------------------------------------------------

DEFAULT_MODULES_TO_NOT_CONVERT = ["embed_tokens", "lm_head", "router"]


@dataclass
class Config:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    intermediate_size: int = 0            # dense FFN hidden width
    moe_layers: List[int] = field(default_factory=list)
    num_experts: int = 0                  # E
    num_experts_per_tok: int = 0          # k
    moe_intermediate_size: int = 0        # expert hidden width
    moe_num_heads: int = 1                # h
    moe_head_proj: bool = False
    moe_merge_proj: bool = False
    moe_head_proj_bias: bool = False      # extension: optional bias on head_proj
    moe_merge_proj_bias: bool = False     # extension: optional bias on merge_proj
    shared_expert_intermediate_size: int = 0
    norm_topk_prob: bool = True
    use_sub_norm: bool = False
    quantized: bool = False               # quantization_config with quant_method bitnet
    modules_to_not_convert: List[str] = field(
        default_factory=lambda: list(DEFAULT_MODULES_TO_NOT_CONVERT))
    raw: dict = field(default_factory=dict)  # the config.json dict as given


def load_config(d: dict) -> Config:
    """config.json dict -> Config, applying every default of the spec table."""
    def req(key):
        if key not in d or d[key] is None:
            raise ValueError(f"config.json: '{key}' is required")
        return d[key]

    V, D, L = int(req("vocab_size")), int(req("hidden_size")), int(req("num_hidden_layers"))
    Hq = int(req("num_attention_heads"))
    Hkv = int(d.get("num_key_value_heads") or Hq)
    if d.get("head_dim") is not None:
        hd = int(d["head_dim"])
    else:
        if D % Hq:
            raise ValueError("hidden_size must be divisible by num_attention_heads when head_dim is absent")
        hd = D // Hq
    if Hq % Hkv:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
    if hd % 2:
        raise ValueError("head_dim must be even (RoPE rotates pairs i, i + hd/2)")

    # moe_layers defaults to "all layers" -- but a config without num_experts is a dense
    # model (our convention: no experts declared => no MoE layers).
    num_experts = int(d.get("num_experts") or 0)
    if "moe_layers" in d and d["moe_layers"] is not None:
        moe_layers = sorted(int(i) for i in d["moe_layers"])
    else:
        moe_layers = list(range(L)) if num_experts > 0 else []
    for i in moe_layers:
        if not 0 <= i < L:
            raise ValueError(f"moe_layers: index {i} outside 0..{L - 1}")

    h = int(d.get("moe_num_heads") or 1)
    head_proj = bool(d["moe_head_proj"]) if d.get("moe_head_proj") is not None else h > 1
    merge_proj = bool(d["moe_merge_proj"]) if d.get("moe_merge_proj") is not None else h > 1

    act = d.get("hidden_act") or "silu"
    if act not in ("silu", "relu2"):
        raise ValueError(f"hidden_act '{act}' not supported (silu | relu2)")

    qc = d.get("quantization_config")
    quantized = False
    not_convert = list(DEFAULT_MODULES_TO_NOT_CONVERT)
    if qc is not None:
        if qc.get("quant_method") != "bitnet":
            raise ValueError(f"quantization_config.quant_method '{qc.get('quant_method')}' not supported")
        quantized = True
        if qc.get("modules_to_not_convert") is not None:
            not_convert = list(qc["modules_to_not_convert"])

    c = Config(
        vocab_size=V, hidden_size=D, num_hidden_layers=L,
        num_attention_heads=Hq, num_key_value_heads=Hkv, head_dim=hd,
        max_position_embeddings=int(d.get("max_position_embeddings") or 2048),
        rope_theta=float(d.get("rope_theta") or 10000.0),
        rms_norm_eps=float(d.get("rms_norm_eps") or 1e-5),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        hidden_act=act,
        intermediate_size=int(d.get("intermediate_size") or 0),
        moe_layers=moe_layers,
        num_experts=num_experts,
        num_experts_per_tok=int(d.get("num_experts_per_tok") or 0),
        moe_intermediate_size=int(d.get("moe_intermediate_size") or 0),
        moe_num_heads=h, moe_head_proj=head_proj, moe_merge_proj=merge_proj,
        moe_head_proj_bias=bool(d.get("moe_head_proj_bias", False)),
        moe_merge_proj_bias=bool(d.get("moe_merge_proj_bias", False)),
        shared_expert_intermediate_size=int(d.get("shared_expert_intermediate_size") or 0),
        norm_topk_prob=bool(d.get("norm_topk_prob", True)),
        use_sub_norm=bool(d.get("use_sub_norm", False)),
        quantized=quantized, modules_to_not_convert=not_convert, raw=dict(d),
    )
    if len(moe_layers) < L and c.intermediate_size <= 0:
        raise ValueError("intermediate_size is required when any layer is dense")
    if moe_layers:
        if c.num_experts <= 0 or c.moe_intermediate_size <= 0 or c.num_experts_per_tok <= 0:
            raise ValueError("num_experts, num_experts_per_tok, moe_intermediate_size are required for MoE layers")
        if c.num_experts_per_tok > c.num_experts:
            raise ValueError("num_experts_per_tok > num_experts")
        if D % h:
            raise ValueError("hidden_size must be divisible by moe_num_heads")
    return c


# ----------------------------------------------------------------------------------------
# 2. BitLinear: full precision or BitNet b1.58 fake-quant (spec section 2)
# ----------------------------------------------------------------------------------------

def weight_quant(w: torch.Tensor):
    """absmean, one scale per tensor: s_w = 1/max(mean|W|, 1e-5), Wq in {-1,0,1}."""
    s_w = 1.0 / w.abs().mean().clamp(min=1e-5)
    wq = (w * s_w).round().clamp(-1, 1)     # torch.round: half to even
    return wq, s_w


def activation_quant(x: torch.Tensor):
    """absmax, one scale per token (last dim): s_x = 127/max(max|x|, 1e-5), xq in [-128,127]."""
    s_x = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = (x * s_x).round().clamp(-128, 127)
    return xq, s_x


def bitlinear(x, weight, bias, quantize: bool, training: bool):
    """y = x W^T (+ b), or its BitNet b1.58 fake-quant form when quantize is True."""
    if not quantize:
        return F.linear(x, weight, bias)
    if training:
        # Straight-through estimator: forward sees the quantized values (rescaled back to
        # float), backward sees the identity, so the latent float weights learn.
        xq, s_x = activation_quant(x)
        wq, s_w = weight_quant(weight)
        x_st = x + (xq / s_x - x).detach()
        w_st = weight + (wq / s_w - weight).detach()
        return F.linear(x_st, w_st, bias)
    # Eval: the exact contract. Integer-valued float32 matmul (exact: |sum| < 2^24 for any
    # realistic width), then ONE division by s_x * s_w computed in float32; bias after.
    xq, s_x = activation_quant(x)
    wq, s_w = weight_quant(weight)
    y = F.linear(xq, wq) / (s_x * s_w)
    if bias is not None:
        y = y + bias
    return y


class BitLinear(nn.Linear):
    """nn.Linear whose forward obeys the execution mode. `convertible` is decided from the
    module's full name against modules_to_not_convert once the model is built."""

    def __init__(self, in_features, out_features, bias=False):
        super().__init__(in_features, out_features, bias=bias)
        self.convertible = True

    def forward(self, x, mode="fp"):
        return bitlinear(x, self.weight, self.bias,
                         quantize=(mode == "fakequant" and self.convertible),
                         training=self.training)


# ----------------------------------------------------------------------------------------
# 3. Layers
# ----------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cos_sin(T, head_dim, theta, device=None):
    """HF Llama rotary tables for positions 0..T-1 (float32), shape [T, head_dim]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    pos = torch.arange(T, dtype=torch.int64, device=device).float()
    freqs = pos[:, None] * inv_freq[None, :]          # [T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)            # pairs (i, i + hd/2) share a frequency
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def act_fn(name, x):
    if name == "silu":
        return F.silu(x)
    return F.relu(x).square()   # relu2: squared ReLU (BitNet b1.58 2B4T)


class Attention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        Hq, Hkv, hd, D = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.hidden_size
        self.q_proj = BitLinear(D, Hq * hd)
        self.k_proj = BitLinear(D, Hkv * hd)
        self.v_proj = BitLinear(D, Hkv * hd)
        self.o_proj = BitLinear(Hq * hd, D)
        if c.use_sub_norm:
            self.attn_sub_norm = RMSNorm(Hq * hd, c.rms_norm_eps)

    def forward(self, x, cos, sin, mode):
        c = self.c
        B, T, _ = x.shape
        Hq, Hkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        q = self.q_proj(x, mode).view(B, T, Hq, hd).transpose(1, 2)    # [B, Hq, T, hd]
        k = self.k_proj(x, mode).view(B, T, Hkv, hd).transpose(1, 2)
        v = self.v_proj(x, mode).view(B, T, Hkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # GQA: query head i reads kv head i // (Hq/Hkv).
        if Hkv != Hq:
            k = k.repeat_interleave(Hq // Hkv, dim=1)
            v = v.repeat_interleave(Hq // Hkv, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (hd ** -0.5)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        p = torch.softmax(scores.float(), dim=-1)
        out = torch.matmul(p, v).transpose(1, 2).reshape(B, T, Hq * hd)
        if c.use_sub_norm:
            out = self.attn_sub_norm(out)
        return self.o_proj(out, mode)


class FFN(nn.Module):
    """down(act(gate(x)) * up(x)); with sub-norms, ffn_sub_norm right before down_proj.
    Used for dense layers, every expert and the shared expert."""

    def __init__(self, dim, hidden, c: Config):
        super().__init__()
        self.act = c.hidden_act
        self.gate_proj = BitLinear(dim, hidden)
        self.up_proj = BitLinear(dim, hidden)
        self.down_proj = BitLinear(hidden, dim)
        if c.use_sub_norm:
            self.ffn_sub_norm = RMSNorm(hidden, c.rms_norm_eps)

    def forward(self, x, mode):
        hmid = act_fn(self.act, self.gate_proj(x, mode)) * self.up_proj(x, mode)
        if hasattr(self, "ffn_sub_norm"):
            hmid = self.ffn_sub_norm(hmid)
        return self.down_proj(hmid, mode)


class MhMoe(nn.Module):
    """Multi-head mixture of experts (spec section 1). h = 1 without head/merge is a plain
    sparse MoE; many small experts with larger k is fine-grained MoE. One code path."""

    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        D, h = c.hidden_size, c.moe_num_heads
        self.sub = D // h
        if c.moe_head_proj:
            self.head_proj = BitLinear(D, D, bias=c.moe_head_proj_bias)
        if c.moe_merge_proj:
            self.merge_proj = BitLinear(D, D, bias=c.moe_merge_proj_bias)
        self.router = BitLinear(self.sub, c.num_experts)
        self.experts = nn.ModuleList([FFN(self.sub, c.moe_intermediate_size, c) for _ in range(c.num_experts)])
        if c.shared_expert_intermediate_size > 0:
            self.shared_expert = FFN(D, c.shared_expert_intermediate_size, c)
        self.aux_loss = None       # set by every forward (Switch-style load balancing)
        self.expert_counts = None  # [E] sub-token assignments of the last forward
        self.last_router_probs = None  # [N*h, E] router softmax of the last forward (detached)

    def forward(self, x, mode):
        c = self.c
        shape = x.shape
        D, h, E, k = c.hidden_size, c.moe_num_heads, c.num_experts, c.num_experts_per_tok
        x2 = x.reshape(-1, D)                                   # [N, D]
        N = x2.shape[0]
        xh = self.head_proj(x2, mode) if c.moe_head_proj else x2
        # Split into h sub-tokens of width D/h, in order: row n*h + j is sub-token j of token n.
        s = xh.reshape(N * h, self.sub)
        logits = self.router(s, mode).float()                   # [N*h, E]
        probs = torch.softmax(logits, dim=-1)
        topv, topi = torch.topk(probs, k, dim=-1)               # [N*h, k]
        if c.norm_topk_prob:
            topv = topv / topv.sum(dim=-1, keepdim=True)
        y = torch.zeros_like(s)
        counts = torch.zeros(E, dtype=torch.float32, device=x.device)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.nonzero(topi == e, as_tuple=True)
            counts[e] = rows.numel()
            if rows.numel() == 0:
                continue
            out = expert(s[rows], mode)
            y.index_add_(0, rows, out * topv[rows, slot].unsqueeze(-1).to(out.dtype))
        y = y.reshape(N, D)                                     # concat sub-tokens back
        out = self.merge_proj(y, mode) if c.moe_merge_proj else y
        if c.shared_expert_intermediate_size > 0:
            out = out + self.shared_expert(x2, mode)            # on the un-split x
        # Load balancing (Switch Transformer): E * sum_e f_e * P_e over sub-tokens, with
        # f_e = share of the N*h*k assignments sent to e, P_e = mean router prob of e.
        # Perfectly balanced routing gives 1.0.
        f = counts / (N * h * k)
        P = probs.mean(dim=0)
        self.aux_loss = E * torch.sum(f * P)
        self.expert_counts = counts
        self.last_router_probs = probs.detach()
        return out.reshape(shape)


class DecoderLayer(nn.Module):
    def __init__(self, c: Config, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.is_moe = layer_idx in c.moe_layers
        self.mlp = MhMoe(c) if self.is_moe else FFN(c.hidden_size, c.intermediate_size, c)

    def forward(self, x, cos, sin, mode):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mode)
        return x + self.mlp(self.post_attention_layernorm(x), mode)


# ----------------------------------------------------------------------------------------
# 4. The model
# ----------------------------------------------------------------------------------------

class Inner(nn.Module):
    """Holds everything under the 'model.' prefix."""

    def __init__(self, c: Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(c, i) for i in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class MhMoeForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = config if isinstance(config, Config) else load_config(config)
        self.config = c
        self.model = Inner(c)
        if not c.tie_word_embeddings:
            self.lm_head = BitLinear(c.hidden_size, c.vocab_size)
        # HF rule: a linear stays float when any entry of modules_to_not_convert is a
        # substring of its full module name (e.g. "router" matches model.layers.3.mlp.router).
        for name, m in self.named_modules():
            if isinstance(m, BitLinear):
                m.convertible = not any(s in name for s in c.modules_to_not_convert)
        self.lm_head_convertible = not any(s in "lm_head" for s in c.modules_to_not_convert)
        self.last_aux_loss = None
        init_weights(self)

    def forward(self, input_ids: torch.Tensor, mode: str = "fp") -> torch.Tensor:
        """input_ids [B, T] (or [T]) -> float32 logits [B, T, V]. Positions start at 0."""
        if mode not in ("fp", "fakequant"):
            raise ValueError(f"mode '{mode}' (fp | fakequant)")
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        c = self.config
        T = input_ids.shape[1]
        x = self.model.embed_tokens(input_ids).float()
        cos, sin = rope_cos_sin(T, c.head_dim, c.rope_theta, device=x.device)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mode)
        x = self.model.norm(x)
        if c.tie_word_embeddings:
            logits = bitlinear(x, self.model.embed_tokens.weight, None,
                               quantize=(mode == "fakequant" and self.lm_head_convertible),
                               training=self.training)
        else:
            logits = self.lm_head(x, mode)
        aux = [l.mlp.aux_loss for l in self.model.layers if l.is_moe]
        self.last_aux_loss = torch.stack(aux).mean() if aux else torch.zeros((), device=x.device)
        return logits.float()


@torch.no_grad()
def init_weights(model: MhMoeForCausalLM, std: float = 0.02, generator=None):
    """Plain init for training from scratch: normal(0, std) linears and embeddings, norms 1,
    biases 0. (make_fixtures.py uses its own, larger init so routing is non-trivial.)"""
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or "layernorm" in name:
            p.fill_(1.0)
        elif name.endswith(".bias"):
            p.zero_()
        else:
            p.normal_(0.0, std, generator=generator)


# ----------------------------------------------------------------------------------------
# 5. Checkpoints: safetensors by hand
# ----------------------------------------------------------------------------------------
# File layout: u64 little-endian header length N, N bytes of JSON header (padded with
# spaces to a multiple of 8), then the raw little-endian tensor bytes.

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I32": torch.int32, "I64": torch.int64}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
_TORCH_DTYPE_STR = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)   # same bits; numpy has no bfloat16
    return t.numpy().tobytes()    # x86/ARM hosts are little-endian


def write_safetensors(path: str, tensors: dict, metadata: Optional[dict] = None):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name]
        data = _tensor_bytes(t)
        header[name] = {"dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def read_safetensors(path: str) -> dict:
    """-> {name: tensor} in the stored dtype."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = _DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        buf = bytearray(raw[base + b: base + e])
        if dt in (torch.bfloat16, torch.float16):
            t = torch.frombuffer(buf, dtype=torch.int16).view(dt) if buf else torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(buf, dtype=dt) if buf else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def save_checkpoint(model_or_state_dict, config_dict: dict, out_dir: str,
                    dtype: str = "F32", shards: int = 1):
    """Write config.json + model.safetensors (or n shards + model.safetensors.index.json).
    Tensors are cast to dtype (F32 | F16 | BF16; BF16 by round-to-nearest-even as torch)."""
    if dtype not in ("F32", "F16", "BF16"):
        raise ValueError(dtype)
    sd = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    tdt = _DTYPES[dtype]
    tensors = {k: v.detach().float().to(tdt).contiguous() for k, v in sd.items()}
    os.makedirs(out_dir, exist_ok=True)
    cfg = dict(config_dict)
    cfg["model_type"] = "mhmoe"
    cfg.setdefault("architectures", ["MhMoeForCausalLM"])
    cfg["torch_dtype"] = _TORCH_DTYPE_STR[dtype]
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    meta = {"format": "pt"}
    if shards <= 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, meta)
        return
    # Greedy split in name order into shards of about equal byte size.
    names = sorted(tensors)
    total = sum(tensors[n].numel() * tensors[n].element_size() for n in names)
    target = total / shards
    groups, cur, acc = [], [], 0
    for n in names:
        cur.append(n)
        acc += tensors[n].numel() * tensors[n].element_size()
        if acc >= target * (len(groups) + 1) and len(groups) < shards - 1:
            groups.append(cur)
            cur = []
    groups.append(cur)
    groups = [g for g in groups if g]
    weight_map = {}
    for i, g in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        write_safetensors(os.path.join(out_dir, fname), {n: tensors[n] for n in g}, meta)
        for n in g:
            weight_map[n] = fname
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")


def load_state_dict(model_dir: str) -> dict:
    """All tensors of a checkpoint folder (single file or sharded), upcast to float32."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    sd = {}
    for fn in files:
        sd.update(read_safetensors(os.path.join(model_dir, fn)))
    return {k: v.float() for k, v in sd.items()}


def load_checkpoint(model_dir: str):
    """-> (Config, MhMoeForCausalLM in eval mode) running on exactly the stored weights."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = load_config(json.load(f))
    model = MhMoeForCausalLM(cfg)
    sd = load_state_dict(model_dir)
    model.load_state_dict(sd, strict=True)
    model.eval()
    return cfg, model


# ----------------------------------------------------------------------------------------
# 6. Evaluation
# ----------------------------------------------------------------------------------------

@torch.no_grad()
def perplexity(model, tokens, ctx: int, mode: str = "fp", batch: int = 1):
    """Split tokens into consecutive non-overlapping chunks of ctx tokens (the last may be
    shorter), run each chunk from position 0 with a fresh forward, score every token of a
    chunk but the first (token t predicted from logits at t-1), NLL via log_softmax in
    float64 of the float32 logits. Returns (ppl, mean_nll, scored_tokens).
    batch > 1 runs equal-length chunks together (same math, float rounding may differ in
    the last bits); the fixtures use batch = 1."""
    tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
    chunks = [tokens[i:i + ctx] for i in range(0, tokens.numel(), ctx)]
    total, n = 0.0, 0
    i = 0
    while i < len(chunks):
        group = [chunks[i]]
        while batch > 1 and len(group) < batch and i + len(group) < len(chunks) \
                and chunks[i + len(group)].numel() == chunks[i].numel():
            group.append(chunks[i + len(group)])
        i += len(group)
        ids = torch.stack(group)
        if ids.shape[1] < 2:
            continue
        logits = model(ids, mode=mode)
        logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
        nll = -logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        total += nll.sum().item()
        n += nll.numel()
    mean = total / max(n, 1)
    return math.exp(mean), mean, n


# ----------------------------------------------------------------------------------------
# 7. CLI
# ----------------------------------------------------------------------------------------

def read_token_ids(path: str) -> torch.Tensor:
    """Token ids from a text file (integers separated by whitespace and/or commas) or from a
    .safetensors file holding a 'tokens' tensor."""
    if path.endswith(".safetensors"):
        return read_safetensors(path)["tokens"].long().reshape(-1)
    with open(path) as f:
        return torch.tensor([int(t) for t in f.read().replace(",", " ").split()], dtype=torch.long)


def _main(argv):
    torch.set_num_threads(int(os.environ.get("MHMOE_THREADS", "1")))
    if argv and argv[0] == "perplexity":
        ap = argparse.ArgumentParser(prog="mhmoe.py perplexity",
                                     description="Perplexity of a token-id file (fixture definition).")
        ap.add_argument("--model", required=True)
        src = ap.add_mutually_exclusive_group(required=True)
        src.add_argument("--ids", "--text-ids", dest="ids",
                         help="token ids: text (whitespace/comma separated) or .safetensors with 'tokens'")
        src.add_argument("--text", help="UTF-8 text file, encoded whole with the model's tokenizer.json "
                                        "(tools/tokenizer/train_bpe.py; no special tokens added)")
        ap.add_argument("--ctx", type=int, default=512)
        ap.add_argument("--mode", choices=["fp", "fakequant"], default="fp")
        ap.add_argument("--batch", type=int, default=1)
        ap.add_argument("--max-tokens", type=int, default=0, help="use only the first N ids (0 = all)")
        a = ap.parse_args(argv[1:])
        _, model = load_checkpoint(a.model)
        if a.text:
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tokenizer"))
            from train_bpe import Tokenizer
            with open(a.text, encoding="utf-8") as f:
                ids = torch.tensor(Tokenizer.from_file(os.path.join(a.model, "tokenizer.json")).encode(f.read()),
                                   dtype=torch.long)
        else:
            ids = read_token_ids(a.ids)
        if a.max_tokens:
            ids = ids[:a.max_tokens]
        ppl, nll, n = perplexity(model, ids, a.ctx, a.mode, a.batch)
        print(json.dumps({"ppl": ppl, "mean_nll": nll, "scored_tokens": n, "ctx": a.ctx, "mode": a.mode}))
        return 0

    ap = argparse.ArgumentParser(prog="mhmoe.py", description=(
        "Run the reference on a checkpoint folder and print/dump logits. "
        "Subcommand: 'mhmoe.py perplexity --model DIR --ids FILE --ctx N'."))
    ap.add_argument("--model", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--tokens", help="comma-separated token ids, e.g. 1,2,3")
    g.add_argument("--text-ids", help="file of token ids (text or .safetensors 'tokens')")
    ap.add_argument("--mode", choices=["fp", "fakequant"], default="fp")
    ap.add_argument("--out", help="write tokens + logits [T, V] F32 to this .safetensors file")
    ap.add_argument("--top", type=int, default=5, help="print the top-N next tokens per position")
    a = ap.parse_args(argv)
    _, model = load_checkpoint(a.model)
    ids = (torch.tensor([int(t) for t in a.tokens.split(",") if t.strip()], dtype=torch.long)
           if a.tokens else read_token_ids(a.text_ids))
    with torch.no_grad():
        logits = model(ids.unsqueeze(0), mode=a.mode)[0]
    if a.out:
        write_safetensors(a.out, {"tokens": ids.to(torch.int32), "logits": logits.contiguous()},
                          {"mode": a.mode})
    for t in range(ids.numel()):
        v, i = logits[t].topk(min(a.top, logits.shape[-1]))
        tops = " ".join(f"{int(j)}:{float(x):.5f}" for x, j in zip(v, i))
        print(f"pos {t} id {int(ids[t])} -> {tops}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
