#!/usr/bin/python3
"""Evaluate an exported BitMoe folder on the held-out split, with helper-1's reference.

  /usr/bin/python3 tools/train/evaluate.py --model models/bitmoe-mh2-brown-kjv \\
      --ctx 256 --max-tokens 20480 --out data/runs/bitmoe-mh2/eval.json

Prints and writes (JSON):
  * perplexity in "fp" and "fakequant" mode: mhmoe.perplexity(model, ids, ctx) on the first
    --max-tokens held-out tokens (consecutive non-overlapping chunks of ctx tokens, every
    token but the first of a chunk scored -- the fixture definition);
  * a unigram baseline on exactly the same scored tokens: p(t) = (count_train(t) + 1) /
    (N_train + V), counts from the training token stream (add-one smoothing over the full
    vocabulary V);
  * a greedy continuation (fakequant) of a held-out sentence start.
The held-out token stream is the one training used (documents of data/heldout.txt, each
followed by <|endoftext|>), taken from the cache in data/tokens/ or rebuilt.
"""
import argparse
import json
import math
import os
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))
sys.path.insert(0, os.path.join(REPO, "tools", "tokenizer"))
sys.path.insert(0, HERE)

import mhmoe  # noqa: E402
from train_bpe import Tokenizer  # noqa: E402
from train import load_tokens  # noqa: E402


def unigram_ppl(train_tok, held, ctx, V):
    counts = torch.bincount(train_tok, minlength=V).double()
    logp = torch.log((counts + 1) / (counts.sum() + V))
    total, n = 0.0, 0
    for i in range(0, held.numel(), ctx):
        chunk = held[i:i + ctx]
        if chunk.numel() < 2:
            continue
        total -= logp[chunk[1:]].sum().item()
        n += chunk.numel() - 1
    return math.exp(total / n), total / n, n


@torch.no_grad()
def greedy(model, tok, prompt, n_new, mode, max_ctx):
    ids = tok.encode(prompt)
    eot = tok.token_to_id("<|endoftext|>")
    out = list(ids)
    for _ in range(n_new):
        x = torch.tensor(out[-max_ctx:], dtype=torch.long).unsqueeze(0)
        nxt = int(model(x, mode=mode)[0, -1].argmax())
        out.append(nxt)
        if nxt == eot:
            break
    return ids, out[len(ids):]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", default=os.path.join(REPO, "data"))
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=20480)
    ap.add_argument("--modes", nargs="+", default=["fp", "fakequant"])
    ap.add_argument("--prompt", nargs="+", default=[
        "Now it came to pass in the days when the judges ruled,",   # Ruth 1:1 (held out)
        "The nuclear war is already being fought, except that"])   # Brown cb20 (held out)
    ap.add_argument("--gen-tokens", type=int, default=48)
    ap.add_argument("--ids-out", help="also write the evaluated held-out ids here (text, one line)")
    ap.add_argument("--out")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    tok_path = os.path.join(a.model, "tokenizer.json")
    tok = Tokenizer.from_file(tok_path)
    cfg, model = mhmoe.load_checkpoint(a.model)
    train_tok = load_tokens(a.data_dir, "train", tok_path)
    held = load_tokens(a.data_dir, "heldout", tok_path)[: a.max_tokens]
    if a.ids_out:
        with open(a.ids_out, "w") as f:
            f.write(" ".join(str(int(i)) for i in held) + "\n")
    res = {"model": a.model, "ctx": a.ctx, "heldout_tokens": int(held.numel())}
    uppl, unll, un = unigram_ppl(train_tok, held, a.ctx, cfg.vocab_size)
    res["unigram"] = {"ppl": uppl, "mean_nll": unll, "scored_tokens": un}
    print(f"unigram (add-one, train counts): ppl {uppl:.2f} over {un} tokens", flush=True)
    for mode in a.modes:
        t0 = time.time()
        ppl, nll, n = mhmoe.perplexity(model, held, a.ctx, mode)
        res[mode] = {"ppl": ppl, "mean_nll": nll, "scored_tokens": n, "seconds": round(time.time() - t0, 1)}
        print(f"{mode}: ppl {ppl:.3f} (nll {nll:.4f}) over {n} tokens, {time.time() - t0:.0f}s", flush=True)
    gen_mode = "fakequant" if cfg.quantized else "fp"
    res["generation"] = []
    for prompt in a.prompt:
        p_ids, new = greedy(model, tok, prompt, a.gen_tokens, gen_mode, a.ctx)
        res["generation"].append({"mode": gen_mode, "prompt": prompt, "prompt_ids": p_ids,
                                  "new_ids": new, "continuation": tok.decode(new)})
        print(f"greedy ({gen_mode}): {prompt!r} -> {tok.decode(new)!r}", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
