#!/usr/bin/python3
"""Train a BitMoe model (MH-MoE / SMoE / dense, float or BitNet QAT) on the prepared corpus.

Uses the PyTorch reference model tools/reference/mhmoe.py (load_config, MhMoeForCausalLM,
save_checkpoint). See tools/train/README.md for the full recipe.

  /usr/bin/python3 tools/train/train.py --config tools/train/configs/mh2.json --qat \\
      --run-dir data/runs/mh2 --max-minutes 60 --export models/bitmoe-mh2-brown-kjv

  --resume            continue from RUN_DIR/ckpt.pt (model, optimizer, step, RNG, elapsed)
  --export-only DIR   load RUN_DIR/ckpt.pt and only write the HuggingFace folder

Data: data/train.txt and data/heldout.txt (tools/data/prepare_corpus.sh). Documents are
separated by blank lines; each document is encoded with the tokenizer and followed by
<|endoftext|>. The token streams are cached as uint16 .bin files in --data-dir/tokens/
(keyed by the tokenizer's hash).

Training batches: B random windows of seq_len + 1 tokens from the training stream (torch
generator, seeded, state saved in checkpoints). Held-out loss: mean next-token NLL over
the first --eval-tokens tokens of the held-out stream, in non-overlapping windows of
seq_len, model.eval() (so fake-quant is evaluated exactly as at inference).

LR schedule: linear warmup for --warmup steps, then cosine decay to --min-lr-ratio * lr.
Progress through the cosine is max(step / max_steps, elapsed / max_minutes) so a time
budget always ends with a fully decayed learning rate.
"""
import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")   # one compute thread unless told otherwise

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))
sys.path.insert(0, os.path.join(REPO, "tools", "tokenizer"))

import mhmoe  # noqa: E402  (helper-1's reference model)
from train_bpe import Tokenizer  # noqa: E402

QUANT_CONFIG = {"quant_method": "bitnet", "modules_to_not_convert": ["embed_tokens", "lm_head", "router"]}


# --------------------------------------------------------------------------- data

def file_md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def encode_corpus(text_path, tok, eot_id):
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    ids = []
    for doc in text.split("\n\n"):
        doc = doc.strip("\n")
        if not doc:
            continue
        ids.extend(tok.encode(doc))
        ids.append(eot_id)
    return ids


def load_tokens(data_dir, split, tokenizer_path):
    """uint16 token stream of data_dir/{split}.txt, cached in data_dir/tokens/."""
    text_path = os.path.join(data_dir, f"{split}.txt")
    key = file_md5(tokenizer_path)[:10] + "-" + file_md5(text_path)[:10]
    cache_dir = os.path.join(data_dir, "tokens")
    os.makedirs(cache_dir, exist_ok=True)
    cache = os.path.join(cache_dir, f"{split}-{key}.bin")
    if not os.path.exists(cache):
        t0 = time.time()
        tok = Tokenizer.from_file(tokenizer_path)
        assert tok.vocab_size <= 65536
        ids = encode_corpus(text_path, tok, tok.token_to_id("<|endoftext|>"))
        t = torch.tensor(ids, dtype=torch.int32).to(torch.int16)  # wraps; read back as uint16
        tmp = cache + ".tmp"
        with open(tmp, "wb") as f:
            f.write(t.numpy().tobytes())
        os.replace(tmp, cache)
        print(f"tokenized {text_path}: {len(ids)} tokens in {time.time() - t0:.1f}s -> {cache}", flush=True)
    with open(cache, "rb") as f:
        raw = bytearray(f.read())
    t = torch.frombuffer(raw, dtype=torch.int16).to(torch.int32) & 0xFFFF
    return t.long()


# --------------------------------------------------------------------------- model helpers

def build_config(path, qat, vocab_size, seq_len):
    with open(path) as f:
        cfg = json.load(f)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}  # "_comment" keys
    cfg["vocab_size"] = vocab_size
    cfg.setdefault("max_position_embeddings", max(2048, seq_len))
    cfg.pop("quantization_config", None)
    if qat:
        cfg["quantization_config"] = dict(QUANT_CONFIG)
    return cfg


def count_params(model, cfg):
    """(total, active): active counts the experts a token actually runs -- each of its h
    sub-tokens runs k experts, so min(E, h*k) expert FFNs per MoE layer (plus the
    embedding table, as usual)."""
    total = sum(p.numel() for p in model.parameters())
    c = model.config
    per_expert = 3 * (c.hidden_size // max(c.moe_num_heads, 1)) * c.moe_intermediate_size
    inactive = 0
    if c.moe_layers:
        used = min(c.num_experts, c.moe_num_heads * c.num_experts_per_tok)
        inactive = len(c.moe_layers) * (c.num_experts - used) * per_expert
    return total, total - inactive


def lr_at(step, elapsed, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    prog = (step - args.warmup) / max(1, args.max_steps - args.warmup)
    if args.max_minutes:
        prog = max(prog, elapsed / (60.0 * args.max_minutes))
    prog = min(1.0, prog)
    lo = args.lr * args.min_lr_ratio
    return lo + 0.5 * (args.lr - lo) * (1 + math.cos(math.pi * prog))


def make_optimizer(model, args):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed_tokens" not in n else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


@torch.no_grad()
def heldout_loss(model, tokens, seq_len, n_tokens, mode):
    was = model.training
    model.eval()
    toks = tokens[: n_tokens + 1]
    total, n = 0.0, 0
    for i in range(0, toks.numel() - 1, seq_len):
        x = toks[i:i + seq_len + 1]
        if x.numel() < 2:
            break
        logits = model(x[:-1].unsqueeze(0), mode=mode)[0]
        total += torch.nn.functional.cross_entropy(logits.float(), x[1:], reduction="sum").item()
        n += x.numel() - 1
    model.train(was)
    return total / max(n, 1)


def get_batch(tokens, B, T, gen):
    ix = torch.randint(0, tokens.numel() - T - 1, (B,), generator=gen)
    x = torch.stack([tokens[i:i + T + 1] for i in ix.tolist()])
    return x[:, :-1], x[:, 1:]


def save_ckpt(path, model, opt, step, elapsed, gen, cfg, args, tokens_seen):
    state = {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
        "elapsed": elapsed, "tokens_seen": tokens_seen, "config": cfg, "args": vars(args),
        "gen_state": gen.get_state(), "torch_rng": torch.get_rng_state(),
        "py_rng": random.getstate(),
    }
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def export(model, cfg, out_dir, dtype, tokenizer_path, extra=None):
    mhmoe.save_checkpoint(model, cfg, out_dir, dtype)
    shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.json"))
    if extra:
        with open(os.path.join(out_dir, "training_summary.json"), "w") as f:
            json.dump(extra, f, indent=2)
            f.write("\n")
    print(f"exported {out_dir} ({dtype})", flush=True)


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="model config JSON (spec keys; vocab_size is taken from the tokenizer)")
    ap.add_argument("--qat", action="store_true", help="BitNet b1.58 QAT (fakequant + STE); writes quantization_config")
    ap.add_argument("--data-dir", default=os.path.join(REPO, "data"))
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default DATA_DIR/tok/tokenizer.json)")
    ap.add_argument("--run-dir", required=True, help="checkpoints + log go here")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--max-minutes", type=float, default=0, help="time budget (0 = none); training stops and exports")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--aux-coef", type=float, default=0.01, help="load-balancing loss coefficient")
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-tokens", type=int, default=8192)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export", help="write the HuggingFace folder here when training ends")
    ap.add_argument("--export-only", help="load RUN_DIR/ckpt.pt, write the HuggingFace folder here, exit")
    ap.add_argument("--export-dtype", default="F32", choices=["F32", "F16", "BF16"])
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    tok_path = args.tokenizer or os.path.join(args.data_dir, "tok", "tokenizer.json")
    os.makedirs(args.run_dir, exist_ok=True)
    ckpt_path = os.path.join(args.run_dir, "ckpt.pt")
    log_path = os.path.join(args.run_dir, "log.tsv")

    if args.export_only:
        st = torch.load(ckpt_path)
        model = mhmoe.MhMoeForCausalLM(mhmoe.load_config(st["config"]))
        model.load_state_dict(st["model"])
        export(model, st["config"], args.export_only, args.export_dtype, tok_path,
               {"step": st["step"], "tokens_seen": st["tokens_seen"], "elapsed_s": st["elapsed"]})
        return

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    tok = Tokenizer.from_file(tok_path)
    train_tok = load_tokens(args.data_dir, "train", tok_path)
    held_tok = load_tokens(args.data_dir, "heldout", tok_path)
    print(f"train tokens {train_tok.numel()}, held-out tokens {held_tok.numel()}", flush=True)

    st = None
    if args.resume and os.path.exists(ckpt_path):
        st = torch.load(ckpt_path)
        cfg = st["config"]
    else:
        if not args.config:
            ap.error("--config is required unless resuming")
        cfg = build_config(args.config, args.qat, tok.vocab_size, args.seq_len)
    qat = "quantization_config" in cfg
    mode = "fakequant" if qat else "fp"
    model = mhmoe.MhMoeForCausalLM(mhmoe.load_config(cfg))
    model.train()
    opt = make_optimizer(model, args)
    step, elapsed, tokens_seen = 0, 0.0, 0
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        step, elapsed, tokens_seen = st["step"], st["elapsed"], st["tokens_seen"]
        gen.set_state(st["gen_state"])
        torch.set_rng_state(st["torch_rng"])
        random.setstate(st["py_rng"])
        print(f"resumed from {ckpt_path} at step {step} ({elapsed / 60:.1f} min)", flush=True)
    total, active = count_params(model, cfg)
    print(f"model: {total} params ({active} active per token), mode {mode}", flush=True)
    print("config: " + json.dumps(cfg), flush=True)
    with open(os.path.join(args.run_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    new_log = not os.path.exists(log_path) or st is None
    logf = open(log_path, "w" if new_log else "a")
    if new_log:
        logf.write("step\ttrain_loss\taux_loss\theldout_loss\tlr\ttokens_per_s\telapsed_s\ttokens_seen\n")
        logf.flush()

    B, T = args.batch_size, args.seq_len
    t_start = time.time() - elapsed
    last_ckpt = time.time()
    win_loss, win_aux, win_n, win_t0, win_tok = 0.0, 0.0, 0, time.time(), 0
    best = None
    stop_reason = None
    while True:
        elapsed = time.time() - t_start
        if step >= args.max_steps:
            stop_reason = "max_steps"
        elif args.max_minutes and elapsed >= 60 * args.max_minutes:
            stop_reason = "time budget"
        if stop_reason:
            break
        lr = lr_at(step, elapsed, args)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = get_batch(train_tok, B, T, gen)
        logits = model(x, mode=mode)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        aux = model.last_aux_loss if model.last_aux_loss is not None else torch.zeros(())
        (loss + args.aux_coef * aux).backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += B * T
        win_loss += loss.item()
        win_aux += float(aux)
        win_n += 1
        win_tok += B * T

        do_eval = step % args.eval_every == 0
        if step % args.log_every == 0 or do_eval:
            now = time.time()
            tps = win_tok / max(now - win_t0, 1e-9)
            hl = ""
            if do_eval:
                h = heldout_loss(model, held_tok, T, args.eval_tokens, mode)
                hl = f"{h:.4f}"
                best = h if best is None else min(best, h)
            elapsed = now - t_start
            line = (f"{step}\t{win_loss / win_n:.4f}\t{win_aux / win_n:.4f}\t{hl}\t{lr:.3e}\t"
                    f"{tps:.0f}\t{elapsed:.0f}\t{tokens_seen}")
            logf.write(line + "\n")
            logf.flush()
            print(f"step {step} loss {win_loss / win_n:.4f} aux {win_aux / win_n:.3f}"
                  + (f" heldout {hl}" if hl else "") + f" lr {lr:.2e} tok/s {tps:.0f} {elapsed / 60:.1f}min",
                  flush=True)
            win_loss, win_aux, win_n, win_t0, win_tok = 0.0, 0.0, 0, time.time(), 0
        if time.time() - last_ckpt >= 60 * args.ckpt_minutes:
            save_ckpt(ckpt_path, model, opt, step, time.time() - t_start, gen, cfg, args, tokens_seen)
            last_ckpt = time.time()
            print(f"checkpoint {ckpt_path} at step {step}", flush=True)

    elapsed = time.time() - t_start
    h = heldout_loss(model, held_tok, T, args.eval_tokens, mode)
    logf.write(f"{step}\t\t\t{h:.4f}\t\t\t{elapsed:.0f}\t{tokens_seen}\n")
    logf.close()
    save_ckpt(ckpt_path, model, opt, step, elapsed, gen, cfg, args, tokens_seen)
    print(f"done ({stop_reason}): step {step}, {tokens_seen} tokens, {elapsed / 60:.1f} min, "
          f"final held-out loss {h:.4f} (ppl {math.exp(h):.2f}, {args.eval_tokens} tokens, mode {mode})",
          flush=True)
    if args.export:
        export(model, cfg, args.export, args.export_dtype, tok_path,
               {"step": step, "tokens_seen": tokens_seen, "elapsed_s": round(elapsed, 1),
                "final_heldout_loss": h, "eval_tokens": args.eval_tokens, "mode": mode,
                "seq_len": T, "batch_size": B, "lr": args.lr, "stop_reason": stop_reason,
                "params": total, "active_params": active})


if __name__ == "__main__":
    main()
