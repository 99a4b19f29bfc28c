#!/usr/bin/env bash
# BitMoe next to llama.cpp on one model: makes the llama-architecture TQ2_0 GGUF, compares the
# perplexities of both engines on the same token ids, and runs llama-bench-style speed tests on
# both (BitMoe's side only if `bitmoe bench` exists). Usage: tools/compare-llamacpp.sh --help
set -euo pipefail

usage() {
  cat <<'EOF'
usage: tools/compare-llamacpp.sh (--preset NAME | --config FILE.json | --checkpoint DIR | --gguf FILE) [options]

model (one of):
  --preset NAME        random-weight checkpoint of a named shape (bitmoe random-model --preset; e.g. bitnet-large)
  --config FILE.json   random-weight checkpoint of the shape in a config.json
  --checkpoint DIR     an existing BitNet checkpoint folder (config.json, model.safetensors, tokenizer.json)
  --gguf FILE          an existing llama-architecture GGUF (skips random-model and quantize)
options:
  --out DIR            where checkpoints and GGUF files go (default /tmp/bitmoe-llamacpp; keep it out of the repo)
  --dtype T            random-model weight type: f16 (default), bf16, f32
  --text FILE          text for the perplexity comparison (default tests/fixtures/tokenizer/sample.txt)
  --ctx N              perplexity chunk length (default 512)
  --max-chunks K       score at most K chunks (default: all)
  --ppl-threads N      threads for the perplexity runs (default: all cores)
  -p N, -n N           bench prompt and generation lengths (default 512, 128)
  -t LIST              bench thread counts (default 1,2)
  -r N                 bench repetitions (default 3)
  --skip-ppl           no perplexity comparison
  --skip-bench         no speed comparison
  --force              rebuild the checkpoint and GGUF even if they exist
On a machine shared with other work, OMP_WAIT_POLICY=passive in the environment keeps llama.cpp's
multi-thread figures from collapsing (its OpenMP threads spin at every barrier by default).
EOF
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out=/tmp/bitmoe-llamacpp
preset="" config="" checkpoint="" gguf="" dtype=f16
text="$root/tests/fixtures/tokenizer/sample.txt" ctx=512 max_chunks=0 ppl_threads="$(nproc)"
p=512 n=128 threads=1,2 reps=3 skip_ppl=0 skip_bench=0 force=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --checkpoint) checkpoint="$2"; shift 2 ;;
    --gguf) gguf="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --dtype) dtype="$2"; shift 2 ;;
    --text) text="$2"; shift 2 ;;
    --ctx) ctx="$2"; shift 2 ;;
    --max-chunks) max_chunks="$2"; shift 2 ;;
    --ppl-threads) ppl_threads="$2"; shift 2 ;;
    -p) p="$2"; shift 2 ;;
    -n) n="$2"; shift 2 ;;
    -t) threads="$2"; shift 2 ;;
    -r) reps="$2"; shift 2 ;;
    --skip-ppl) skip_ppl=1; shift ;;
    --skip-bench) skip_bench=1; shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare-llamacpp: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

given=0
for x in "$preset" "$config" "$checkpoint" "$gguf"; do [[ -n "$x" ]] && given=$((given + 1)); done
if [[ $given -ne 1 ]]; then echo "compare-llamacpp: give exactly one of --preset, --config, --checkpoint, --gguf" >&2; exit 2; fi
[[ -f "$text" ]] || { echo "compare-llamacpp: text file '$text' not found" >&2; exit 2; }
case "$out/" in "$root"/*) echo "compare-llamacpp: --out $out is inside the repository; use a folder outside it (e.g. /tmp)" >&2; exit 2 ;; esac
mkdir -p "$out"

echo "== building (Release)"
dotnet build "$root/src/Cli" -c Release -v q -nologo | grep -E ' error |rror\(s\)' || true
dotnet build "$root/tools/LlamaCppCompare" -c Release -v q -nologo | grep -E ' error |rror\(s\)' || true
# the built executables, the same as `dotnet run --project src/Cli -c Release --` and `dotnet run --project tools/LlamaCppCompare -c Release --`
bitmoe="$root/src/Cli/bin/Release/net10.0/bitmoe"
compare="$root/tools/LlamaCppCompare/bin/Release/net10.0/llamacpp-compare"
[[ -x "$bitmoe" && -x "$compare" ]] || { echo "compare-llamacpp: the build failed" >&2; exit 1; }

if [[ -z "$gguf" ]]; then
  if [[ -n "$checkpoint" ]]; then
    name="$(basename "$(cd "$checkpoint" && pwd)")"
  else
    if [[ -n "$preset" ]]; then name="$preset"; src=(--preset "$preset")
    else name="$(basename "$config" .json)"; src=(--config "$config"); fi
    checkpoint="$out/$name-$dtype"
    if [[ $force -eq 1 || ! -f "$checkpoint/model.safetensors" ]]; then
      echo "== random-model ${src[*]} -> $checkpoint"
      rm -rf "$checkpoint"
      if ! err="$("$bitmoe" random-model "${src[@]}" -o "$checkpoint" --dtype "$dtype" 2>&1 >/dev/null)"; then
        # Workaround: RandomModel.SyntheticTokenizer gives up on vocabularies of 16384 and more
        # ("could not build enough synthetic merges") after the weights and config.json are written.
        # Any byte-level BPE tokenizer no larger than vocab_size does for speed and perplexity
        # comparisons (quantize pads the GGUF vocabulary with unused tokens), so use the fixture's.
        if grep -q "could not build enough synthetic merges" <<<"$err" && [[ -f "$checkpoint/model.safetensors" && -f "$checkpoint/config.json" ]]; then
          echo "   note: random-model could not make a synthetic tokenizer of this vocabulary size; using tests/fixtures/tokenizer/tokenizer.json (4096 tokens) instead"
          cp "$root/tests/fixtures/tokenizer/tokenizer.json" "$checkpoint/tokenizer.json"
        else
          tr '\r' '\n' <<<"$err" | grep -v '^random-model:' >&2 || true
          exit 1
        fi
      fi
    else
      echo "== using existing $checkpoint (--force to rebuild)"
    fi
  fi
  gguf="$out/$name.tq2_0.llama.gguf"
  if [[ $force -eq 1 || ! -f "$gguf" || "$checkpoint/model.safetensors" -nt "$gguf" ]]; then
    echo "== quantize $checkpoint -> $gguf"
    "$bitmoe" quantize "$checkpoint" -o "$gguf" --type tq2_0 --arch llama 2>/dev/null
  else
    echo "== using existing $gguf"
  fi
fi

if [[ $skip_ppl -eq 0 ]]; then
  echo
  echo "== perplexity: llama.cpp vs BitMoe on $text (ctx $ctx)"
  extra=()
  [[ "$max_chunks" != 0 ]] && extra=(--max-chunks "$max_chunks")
  "$compare" perplexity --model "$gguf" --text "$text" --ctx "$ctx" --threads "$ppl_threads" --kl "${extra[@]}"
fi

[[ $skip_bench -eq 1 ]] && exit 0

# t/s means of a llama-bench-style markdown table as "threads test mean" lines: the cell that names
# the test (ppN / tgN), the thread count in the cell before it, the mean first in the last cell.
means() {
  awk -F'|' '/^\|/ {
    k = 0
    for (i = 2; i < NF; i++) { c = $i; gsub(/^ +| +$/, "", c); cell[i] = c; if (c ~ /^(pp|tg)[0-9]+/) k = i }
    if (k < 3 || cell[k - 1] !~ /^[0-9]+$/) next
    last = cell[NF - 1]; split(last, parts, " ")
    if (parts[1] ~ /^[0-9.]+$/) print cell[k - 1], cell[k], parts[1]
  }'
}

echo
echo "== llama.cpp bench (LLamaSharp, CPU): -p $p -n $n -t $threads -r $reps"
"$compare" bench --model "$gguf" -p "$p" -n "$n" -t "$threads" -r "$reps" | tee "$out/llamacpp-bench.md"
llama_out="$(cat "$out/llamacpp-bench.md")"

echo
if "$bitmoe" --help 2>/dev/null | grep -qE '^ +bench( |$)'; then
  echo "== BitMoe bench: bitmoe bench -m $gguf -p $p -n $n -t $threads -r $reps"
  "$bitmoe" bench -m "$gguf" -p "$p" -n "$n" -t "$threads" -r "$reps" | tee "$out/bitmoe-bench.md"
  bitmoe_out="$(cat "$out/bitmoe-bench.md")"
  echo
  echo "== tokens/s ratio (BitMoe / llama.cpp)"
  llama_means="$(means <<<"$llama_out")"
  bitmoe_means="$(means <<<"$bitmoe_out")"
  if [[ -z "$bitmoe_means" ]]; then
    echo "(could not read a llama-bench-style table from bitmoe bench; compare the tables above by eye)"
  else
    printf '%-8s %-8s %14s %14s %8s\n' threads test llama.cpp BitMoe ratio
    while read -r t test m; do
      b="$(awk -v t="$t" -v s="$test" '$1 == t && $2 == s { print $3; exit }' <<<"$bitmoe_means")"
      if [[ -n "$b" ]]; then
        awk -v t="$t" -v s="$test" -v l="$m" -v b="$b" 'BEGIN { printf "%-8s %-8s %14.2f %14.2f %7.2fx\n", t, s, l, b, b / l }'
      fi
    done <<<"$llama_means"
  fi
else
  echo "== BitMoe bench: skipped ('bitmoe bench' is not in this build's 'bitmoe --help'; it lands with a later change)"
fi
echo
echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) on $(nproc) CPU(s); timings on a shared machine are noisy"
