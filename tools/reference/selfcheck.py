#!/usr/bin/python3
"""
selfcheck.py -- checks that the reference (mhmoe.py) and the committed fixtures say what
they claim. Run after changing either:

    /usr/bin/python3 tools/reference/selfcheck.py [--fixtures tests/fixtures]

1. a slow, independently written per-token forward (loops over positions, heads, sub-tokens,
   experts; RoPE angles in float64) agrees with MhMoeForCausalLM on every fixture;
2. the logits of a prefix are the first rows of the full sequence's logits, and a batch
   equals its rows run alone;
3. save -> load reproduces the in-memory model exactly (F32, and F16/BF16 sharded on the
   rounded weights);
4. every fixture's stored weights are the seeded float32 weights rounded to the file dtype,
   its reference logits/perplexities are reproduced bit for bit from the files, and for
   F16/BF16 fixtures they differ from the unrounded model's logits;
5. BitLinear details: half-to-even rounding, clamps, BF16 round-to-nearest-even bytes,
   modules_to_not_convert substring matching, STE gradients reach every parameter;
6. tokenizer.json: vocab size = config vocab_size, every merge well formed.
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mhmoe  # noqa: E402
import make_fixtures  # noqa: E402

FAILS = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        FAILS.append(msg)


# ----------------------------------------------------------------------------------------
# 1. An independent per-token forward on the raw state dict.
# ----------------------------------------------------------------------------------------

def naive_forward(c: mhmoe.Config, sd: dict, tokens, mode):
    def quantized(module):
        return mode == "fakequant" and not any(s in module for s in c.modules_to_not_convert)

    def lin(module, x, weight=None):
        W = sd[module + ".weight"] if weight is None else weight
        b = sd.get(module + ".bias")
        if quantized(module):
            sw = 1.0 / max(float(W.abs().mean()), 1e-5)
            sw = torch.tensor(sw, dtype=torch.float32)
            Wq = torch.clamp(torch.round(W * sw), -1, 1)
            sx = torch.tensor(127.0, dtype=torch.float32) / torch.clamp(x.abs().max(), min=1e-5)
            xq = torch.clamp(torch.round(x * sx), -128, 127)
            y = (Wq.double() @ xq.double()).float() / (sx * sw)   # exact integer sums
        else:
            y = (W.double() @ x.double()).float()
        return y + b if b is not None else y

    def rms(x, w):
        xd = x.double()
        return (xd / torch.sqrt((xd * xd).mean() + c.rms_norm_eps) * w.double()).float()

    def act(v):
        return torch.nn.functional.silu(v) if c.hidden_act == "silu" else torch.relu(v) ** 2

    def ffn(prefix, x):
        m = act(lin(prefix + ".gate_proj", x)) * lin(prefix + ".up_proj", x)
        if c.use_sub_norm:
            m = rms(m, sd[prefix + ".ffn_sub_norm.weight"])
        return lin(prefix + ".down_proj", m)

    def rope(v, pos):
        hd = v.numel()
        out = v.clone().double()
        for i in range(hd // 2):
            ang = pos * c.rope_theta ** (-2.0 * i / hd)
            a, b = float(v[i]), float(v[i + hd // 2])
            out[i] = a * math.cos(ang) - b * math.sin(ang)
            out[i + hd // 2] = b * math.cos(ang) + a * math.sin(ang)
        return out.float()

    Hq, Hkv, hd, D = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.hidden_size
    xs = [sd["model.embed_tokens.weight"][t].clone() for t in tokens]
    for li in range(c.num_hidden_layers):
        p = f"model.layers.{li}"
        qs, ks, vs = [], [], []
        for t, x in enumerate(xs):
            hn = rms(x, sd[p + ".input_layernorm.weight"])
            q, k, v = lin(p + ".self_attn.q_proj", hn), lin(p + ".self_attn.k_proj", hn), lin(p + ".self_attn.v_proj", hn)
            qs.append([rope(q[h * hd:(h + 1) * hd], t) for h in range(Hq)])
            ks.append([rope(k[h * hd:(h + 1) * hd], t) for h in range(Hkv)])
            vs.append([v[h * hd:(h + 1) * hd] for h in range(Hkv)])
        new = []
        for t, x in enumerate(xs):
            heads = []
            for h in range(Hq):
                kv = h // (Hq // Hkv)
                sc = torch.tensor([float(qs[t][h].double() @ ks[s][kv].double()) / math.sqrt(hd) for s in range(t + 1)],
                                  dtype=torch.float64)
                pr = torch.softmax(sc, 0)
                heads.append(sum(pr[s] * vs[s][kv].double() for s in range(t + 1)).float())
            o = torch.cat(heads)
            if c.use_sub_norm:
                o = rms(o, sd[p + ".self_attn.attn_sub_norm.weight"])
            x = x + lin(p + ".self_attn.o_proj", o)
            hn = rms(x, sd[p + ".post_attention_layernorm.weight"])
            if li in c.moe_layers:
                m = p + ".mlp"
                hp = lin(m + ".head_proj", hn) if c.moe_head_proj else hn
                w = D // c.moe_num_heads
                ys = []
                for j in range(c.moe_num_heads):
                    s = hp[j * w:(j + 1) * w]
                    pr = torch.softmax(lin(m + ".router", s).double(), 0)
                    order = sorted(range(c.num_experts), key=lambda e: -float(pr[e]))[:c.num_experts_per_tok]
                    wts = [float(pr[e]) for e in order]
                    if c.norm_topk_prob:
                        wts = [x_ / sum(wts) for x_ in wts]
                    ys.append(sum(wt * ffn(f"{m}.experts.{e}", s).double() for e, wt in zip(order, wts)).float())
                y = torch.cat(ys)
                out = lin(m + ".merge_proj", y) if c.moe_merge_proj else y
                if c.shared_expert_intermediate_size:
                    out = out + ffn(m + ".shared_expert", hn)
            else:
                out = ffn(p + ".mlp", hn)
            new.append(x + out)
        xs = new
    W = sd["model.embed_tokens.weight"] if c.tie_word_embeddings else sd["lm_head.weight"]
    return torch.stack([lin("lm_head", rms(x, sd["model.norm.weight"]), weight=W) for x in xs])


# ----------------------------------------------------------------------------------------

def load_fixture(d):
    cfg, model = mhmoe.load_checkpoint(d)
    ref = mhmoe.read_safetensors(os.path.join(d, "reference.safetensors"))
    with open(os.path.join(d, "reference.json")) as f:
        info = json.load(f)
    return cfg, model, ref, info


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


@torch.no_grad()
def check_fixture(d, name):
    cfg, model, ref, info = load_fixture(d)
    tokens = ref["tokens"].long()
    modes = ["fp", "fakequant"] if cfg.quantized else ["fp"]
    sd = mhmoe.load_state_dict(d)

    # 4. files reproduce the reference bit for bit
    for mode in modes:
        logits = model(tokens.unsqueeze(0), mode=mode)[0]
        check(torch.equal(logits, ref[f"logits_{mode}"]), f"{name}: logits_{mode} reproduced exactly from the files")
        ppl, _, n = mhmoe.perplexity(model, tokens, info["ppl_ctx"], mode)
        check(ppl == info[f"ppl_{mode}"] and n == info["scored_tokens"] == 45,
              f"{name}: ppl_{mode} {ppl:.6f} reproduced, {n} scored tokens")

    # stored weights = seeded float32 weights rounded to the file dtype
    fx = next(f for f in make_fixtures.FIXTURES if f["name"] == name)
    _, orig = make_fixtures.build(fx, cfg.vocab_size, info["seed"])
    tdt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[info["dtype"]]
    osd = orig.state_dict()
    same = all(torch.equal(osd[k].to(tdt).float(), sd[k]) for k in osd) and set(osd) == set(sd)
    check(same, f"{name}: stored weights == seeded float32 weights rounded to {info['dtype']}")
    if info["dtype"] != "F32":
        lo = orig(tokens.unsqueeze(0), mode="fp")[0]
        check(not torch.equal(lo, ref["logits_fp"]) and rel_err(lo, ref["logits_fp"]) < 0.2,
              f"{name}: reference logits come from the rounded weights "
              f"(unrounded model differs by {rel_err(lo, ref['logits_fp']):.2e})")

    # 1. independent naive forward
    for mode in modes:
        nv = naive_forward(cfg, sd, tokens.tolist(), mode)
        e = rel_err(nv, ref[f"logits_{mode}"])
        tol = 1e-5 if mode == "fp" else 2e-2   # fakequant: rare .5 ties may round differently
        check(e < tol, f"{name}: naive per-token forward ({mode}) matches, max rel err {e:.2e}")

    # 2. prefix and batch consistency
    for mode in modes:
        full = ref[f"logits_{mode}"]
        worst = 0.0
        for k in (1, 7, 20, 33):
            part = model(tokens[:k].unsqueeze(0), mode=mode)[0]
            worst = max(worst, rel_err(part, full[:k]))
        check(worst < 1e-5, f"{name}: prefix logits = first rows of full ({mode}), max rel err {worst:.2e}")
        other = torch.roll(tokens, 5)
        both = model(torch.stack([tokens, other]), mode=mode)
        alone = model(other.unsqueeze(0), mode=mode)[0]
        e = max(rel_err(both[0], full), rel_err(both[1], alone))
        check(e < 1e-5, f"{name}: batch rows = rows alone ({mode}), max rel err {e:.2e}")

    # 6. tokenizer
    with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    ids_ok = sorted(vocab.values()) == list(range(len(vocab)))
    merges_ok = all(len(m.split(" ")) == 2 and all(p in vocab for p in m.split(" "))
                    and m.replace(" ", "") in vocab for m in tok["model"]["merges"])
    special = [t for t in tok["added_tokens"] if t["special"]]
    check(len(vocab) == cfg.vocab_size and ids_ok and merges_ok and special
          and vocab[special[0]["content"]] == special[0]["id"],
          f"{name}: tokenizer.json vocab {len(vocab)} == vocab_size, ids dense, merges well formed")


@torch.no_grad()
def unit_checks():
    # half-to-even and clamps
    x = torch.tensor([[127.0, 2.5, -3.5, 0.5, -0.5, 1.5]])
    xq, sx = mhmoe.activation_quant(x)
    check(xq.tolist() == [[127, 2, -4, 0, -0, 2]] and float(sx) == 1.0, "activation quant: round half to even")
    xq, _ = mhmoe.activation_quant(torch.tensor([[-2.0, 1.0]]))
    check(xq.tolist() == [[-127, 64]], "activation quant: absmax -> +-127, 63.5 -> 64 (even)")
    W = torch.tensor([[0.5, -1.5, 2.5, 0.0]])   # mean|W| = 1.125
    wq, sw = mhmoe.weight_quant(W)
    check(wq.tolist() == [[0, -1, 1, 0]] and abs(float(sw) - 1 / 1.125) < 1e-7, "weight quant: absmean, clamp to [-1,1]")
    wq, _ = mhmoe.weight_quant(torch.tensor([[0.5, 1.5, 1.0, 1.0]]))   # s_w = 1: 0.5 -> 0
    check(wq.tolist() == [[0, 1, 1, 1]], "weight quant: 0.5 rounds to 0 (half to even)")
    # exact output formula: (xq . Wq) / (s_x * s_w), bias after
    x = torch.randn(3, 40)
    W = torch.randn(7, 40) * 0.1
    b = torch.randn(7)
    y = mhmoe.bitlinear(x, W, b, quantize=True, training=False)
    xq, sx = mhmoe.activation_quant(x)
    wq, sw = mhmoe.weight_quant(W)
    yy = torch.tensor([[float(sum(int(xq[i, j]) * int(wq[o, j]) for j in range(40))) for o in range(7)]
                       for i in range(3)]) / (sx * sw) + b
    check(torch.equal(y, yy), "bitlinear eval: integer dot, one division by s_x*s_w, bias after")

    # BF16 bytes are round-to-nearest-even of the float32 bits
    v = torch.randn(1000)
    v[:4] = torch.tensor([1.00390625, 1.01171875, -2.00390625, 3.0])   # exact ties and a clean value
    with tempfile.TemporaryDirectory() as td:
        p = os.path.join(td, "t.safetensors")
        mhmoe.write_safetensors(p, {"v": v.to(torch.bfloat16)})
        raw = open(p, "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        got = struct.unpack(f"<{v.numel()}H", raw[8 + n:])
    want = []
    for f32 in v.tolist():
        u = struct.unpack("<I", struct.pack("<f", f32))[0]
        want.append(((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)
    check(list(got) == want, "BF16 written by round-to-nearest-even of the float32 bits")

    # config defaults
    c = mhmoe.load_config({"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "num_experts": 4, "num_experts_per_tok": 2,
                           "moe_intermediate_size": 4, "moe_num_heads": 2})
    check(c.num_key_value_heads == 2 and c.head_dim == 4 and c.moe_layers == [0, 1] and c.moe_head_proj
          and c.moe_merge_proj and c.norm_topk_prob and c.rope_theta == 10000.0 and c.rms_norm_eps == 1e-5
          and c.max_position_embeddings == 2048 and not c.tie_word_embeddings and c.hidden_act == "silu"
          and not c.quantized and c.modules_to_not_convert == ["embed_tokens", "lm_head", "router"],
          "load_config applies the spec defaults")

    # save/load round trip: F32 exact; F16/BF16 sharded = rounded weights
    fx = make_fixtures.FIXTURES[3]   # mhmoe_h4_top3_bias_bf16: biases, shared expert, mixed layers
    cfg, model = make_fixtures.build(fx, make_fixtures.VOCAB_SIZE, 123)
    ids = torch.randint(0, 347, (1, 30), generator=torch.Generator().manual_seed(1))
    for dtype, shards in (("F32", 1), ("F32", 4), ("F16", 3), ("BF16", 2)):
        with tempfile.TemporaryDirectory() as td:
            mhmoe.save_checkpoint(model, cfg, td, dtype=dtype, shards=shards)
            files = sorted(os.listdir(td))
            _, m2 = mhmoe.load_checkpoint(td)
            tdt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
            rounded = mhmoe.MhMoeForCausalLM(cfg).eval()
            rounded.load_state_dict({k: v.to(tdt).float() for k, v in model.state_dict().items()})
            ok = torch.equal(m2(ids), rounded(ids))
            if dtype == "F32":
                ok = ok and torch.equal(m2(ids), model(ids))
            nfiles = len([f for f in files if f.endswith(".safetensors")])
            check(ok and nfiles == shards and (shards == 1) == ("model.safetensors" in files),
                  f"save/load {dtype} x{shards} reproduces the (rounded) in-memory logits; files {files}")

    # modules_to_not_convert substring matching
    fx = next(f for f in make_fixtures.FIXTURES if f["name"] == "finegrained_top3_bitnet")
    _, m = make_fixtures.build(fx, make_fixtures.VOCAB_SIZE, 1)
    flt = sorted(n for n, mod in m.named_modules() if isinstance(mod, mhmoe.BitLinear) and not mod.convertible)
    check(all(("router" in n or "shared_expert" in n or n == "lm_head") for n in flt) and len(flt) == 2 * 4 + 1,
          f"modules_to_not_convert matched as substrings ({len(flt)} float linears)")

    # training: STE gradients reach every parameter; aux loss is 1 for uniform routing
    for name in ("mhmoe_h4_top3_bias_bf16", "mhmoe_relu2_subnorm_sharded_f16"):
        fx = next(f for f in make_fixtures.FIXTURES if f["name"] == name)
        _, m = make_fixtures.build(fx, make_fixtures.VOCAB_SIZE, 5)
        m.train()
        with torch.enable_grad():
            logits = m(ids, mode="fakequant")
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]) + 0.01 * m.last_aux_loss
            loss.backward()
        missing = [n for n, p in m.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0]
        check(not missing, f"{name}: fakequant STE training gives every parameter a gradient {missing[:3]}")
    moe = mhmoe.MhMoe(mhmoe.load_config({"vocab_size": 4, "hidden_size": 8, "num_hidden_layers": 1,
                                         "num_attention_heads": 1, "num_experts": 4, "num_experts_per_tok": 1,
                                         "moe_intermediate_size": 4}))
    torch.nn.init.zeros_(moe.router.weight)   # uniform probs; ties -> topk picks expert 0
    moe(torch.randn(5, 8), "fp")
    check(abs(float(moe.aux_loss) - 1.0) < 1e-6, f"aux loss: E*sum f*P = {float(moe.aux_loss):.4f} for uniform probs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(make_fixtures.REPO, "tests", "fixtures"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    unit_checks()
    for fx in make_fixtures.FIXTURES:
        d = os.path.join(a.fixtures, fx["name"])
        if not os.path.isdir(d):
            check(False, f"{fx['name']}: missing in {a.fixtures}")
            continue
        check_fixture(d, fx["name"])
    print(f"\n{len(FAILS)} failure(s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
