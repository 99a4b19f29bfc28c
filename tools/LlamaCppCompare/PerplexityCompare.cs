using System.Diagnostics;
using BitMoe.Engine;
using BitMoe.Engine.Evaluation;
using BitMoe.Quant;
using LLama.Native;

namespace BitMoe.LlamaCppCompare;

/// <summary>
/// The same tokens scored by llama.cpp and by BitMoe, with llama-perplexity's procedure as
/// BitMoe's <see cref="Perplexity"/> implements it: non-overlapping chunks of ctx tokens, each
/// from an empty KV cache, every token but a chunk's first scored, NLL from a double log-softmax.
/// </summary>
public static class PerplexityCompare
{
    public const string Usage = """
        perplexity --model X.gguf --text FILE [--ctx 512] [--threads N] [--max-chunks K] [--kl] [--kv-f32] [-fa auto|0|1] [--verbose]
          Tokenizes FILE with the tokenizer stored in the GGUF file (BitMoe's reading of tokenizer.ggml.*),
          scores those token ids with llama.cpp (LLamaSharp) and with BitMoe (packed mode), and prints
          both perplexities and their relative difference.
          --kl  also run both models in lockstep to report KL(BitMoe || llama.cpp) and top-1 agreement
                (a second BitMoe pass).
          --kv-f32  llama.cpp keeps its KV cache in F32 instead of its default F16 (BitMoe's cache is F32);
                    with flash attention on, llama.cpp still casts K and V to F16, so pair it with -fa 0.
          -fa       flash attention: auto (llama.cpp's default; it turns on on the CPU), 0 or 1.
        """;

    public static int Run(Args a)
    {
        string model = a.Required("--model", "-m");
        string textPath = a.Required("--text", "-f", "--file");
        int ctx = a.Int(512, "--ctx", "-c");
        int threads = a.Int(Environment.ProcessorCount, "--threads", "-t");
        int maxChunks = a.Int(0, "--max-chunks");
        bool kl = a.Flag("--kl");
        bool kvF32 = a.Flag("--kv-f32");
        bool? flash = Bench.ParseFlash(a.String("-fa", "--flash-attn") ?? "auto");
        a.Flag("--verbose", "-v");
        a.CheckAllUsed();
        if (ctx < 2) throw new UsageException("--ctx must be at least 2");
        if (threads < 1) throw new UsageException("--threads must be at least 1");
        if (!File.Exists(model)) throw new UsageException($"{model}: model file not found");
        if (!File.Exists(textPath)) throw new UsageException($"{textPath}: text file not found");

        // BitMoe first: its loader validates the file and gives the tokenizer both engines use.
        using var bitmoe = ModelLoader.Load(model, null, ctx, threads);
        string text = File.ReadAllText(textPath);
        var tokens = bitmoe.Tokenizer.Encode(text);
        if (tokens.Length < 2) throw new BitMoeException($"{textPath}: the text has {tokens.Length} token(s); at least 2 are needed");
        var chunks = Perplexity.Chunks(tokens.Length, ctx).ToList();
        if (maxChunks > 0 && chunks.Count > maxChunks)
        {
            chunks = chunks.Take(maxChunks).ToList();
            tokens = tokens[..(chunks[^1].Start + chunks[^1].Length)];
        }
        int vocab = bitmoe.Config.VocabSize;
        Console.WriteLine($"model: {model}");
        Console.WriteLine($"text: {textPath}: {tokens.Length} tokens (BitMoe tokenizer from the GGUF), {chunks.Count} chunk(s) of up to {ctx}, {threads} thread(s)");

        var p = LlamaNative.Params(model, ctx, ctx, Math.Min(ctx, 512), threads, flash, kvF32 ? GGMLType.GGML_TYPE_F32 : null);
        using var weights = LlamaNative.LoadWeights(p);
        using var context = weights.CreateContext(p);
        Console.WriteLine(LlamaNative.Describe());
        Console.WriteLine($"llama.cpp: {weights.NativeHandle.Description}, {weights.ParameterCount:N0} parameters, vocabulary {weights.Vocab.Count}");
        if (weights.Vocab.Count != vocab)
            throw new BitMoeException($"{model}: llama.cpp reads a vocabulary of {weights.Vocab.Count} tokens, BitMoe {vocab}");

        // Not used for scoring, but a check of the tokenizer metadata: llama.cpp's own tokenization of the text
        // (special tokens parsed, as BitMoe's Encode matches them literally).
        var theirs = weights.Tokenize(text, bitmoe.Tokenizer.BosId != null, true, System.Text.Encoding.UTF8).Select(t => (int)t).ToArray();
        var full = bitmoe.Tokenizer.Encode(text);
        int firstDiff = Enumerable.Range(0, Math.Min(theirs.Length, full.Length)).FirstOrDefault(i => theirs[i] != full[i], -1);
        Console.WriteLine(theirs.SequenceEqual(full)
            ? $"llama.cpp's own tokenizer gives the same {full.Length} token ids for the whole file"
            : $"note: llama.cpp's own tokenizer gives {theirs.Length} ids, BitMoe's {full.Length}; first difference at index {(firstDiff >= 0 ? firstDiff : Math.Min(theirs.Length, full.Length))} (scoring uses BitMoe's ids in both engines)");

        var clock = Stopwatch.StartNew();
        var llama = EvaluateLlama(context.NativeHandle, tokens, chunks, vocab, null);
        double llamaSeconds = clock.Elapsed.TotalSeconds;

        clock.Restart();
        var ours = Perplexity.Evaluate(bitmoe.Transformer, tokens, ctx);
        double oursSeconds = clock.Elapsed.TotalSeconds;

        Console.WriteLine();
        Console.WriteLine($"llama.cpp: PPL = {llama.Perplexity:F6} +/- {llama.PerplexityError:F6}  ({llama.Count} tokens scored, {llama.Count / llamaSeconds:F1} tokens/s)");
        Console.WriteLine($"BitMoe:    PPL = {ours.Perplexity:F6} +/- {ours.PerplexityError:F6}  ({ours.Count} tokens scored, {ours.Count / oursSeconds:F1} tokens/s)");
        double rel = (ours.Perplexity - llama.Perplexity) / llama.Perplexity;
        Console.WriteLine($"relative difference (BitMoe - llama.cpp) / llama.cpp = {rel:+0.000000E+00;-0.000000E+00} ({rel * 100:+0.0000;-0.0000}%)");
        Console.WriteLine($"mean NLL: llama.cpp {llama.MeanNll:F8}, BitMoe {ours.MeanNll:F8}");
        if (llama.Count != ours.Count) throw new InvalidOperationException("the two runs scored different token counts");

        if (kl)
        {
            var cmp = new DistributionComparison();
            double maxKl = 0;
            int over = 0;
            var check = EvaluateLlama(context.NativeHandle, tokens, chunks, vocab, (bitmoeLogProbs, llamaLogProbs) =>
            {
                cmp.Add(bitmoeLogProbs, llamaLogProbs);
                double k = Kl(bitmoeLogProbs, llamaLogProbs);
                maxKl = Math.Max(maxKl, k);
                if (k > 1e-3) over++;
            }, bitmoe.Transformer);
            Console.WriteLine($"KL(BitMoe || llama.cpp): mean {cmp.MeanKl:E4}, median {cmp.MedianKl:E4}, 99th percentile {cmp.P99Kl:E4}, max {maxKl:E4} ({over} position(s) above 1e-3); top-1 agreement {cmp.TopTokenAgreement * 100:F3}% over {cmp.Count} positions");
            if (Math.Abs(check.Perplexity - llama.Perplexity) > 1e-9 * llama.Perplexity)
                Console.WriteLine($"note: the lockstep llama.cpp pass gave PPL {check.Perplexity:F6}, not {llama.Perplexity:F6}");
        }
        return 0;
    }

    /// <summary>KL(p || q) of two log-probability vectors, as DistributionComparison computes it per position.</summary>
    private static double Kl(double[] p, double[] q)
    {
        double kl = 0;
        for (int v = 0; v < p.Length; v++) kl += Math.Exp(p[v]) * (p[v] - q[v]);
        return Math.Max(kl, 0);
    }

    /// <summary>
    /// llama.cpp over the chunks: each chunk is one batch from position 0 after clearing the memory,
    /// with logits for every position but the last. With <paramref name="lockstep"/>, BitMoe runs the
    /// same positions and <paramref name="compare"/> sees both log-probability vectors.
    /// </summary>
    private static NllAccumulator EvaluateLlama(SafeLLamaContextHandle handle, int[] tokens, List<(int Start, int Length)> chunks, int vocab,
        Action<double[], double[]>? compare, Transformer? lockstep = null)
    {
        var acc = new NllAccumulator();
        var batch = new LLamaBatch();
        var logProbs = new double[vocab];
        var ourLogProbs = new double[vocab];
        for (int c = 0; c < chunks.Count; c++)
        {
            var (start, len) = chunks[c];
            handle.MemoryClear(true);
            batch.Clear();
            for (int i = 0; i < len; i++) batch.Add(tokens[start + i], i, LLamaSeqId.Zero, i < len - 1);
            var result = handle.Decode(batch);
            if (result != DecodeResult.Ok) throw new BitMoeException($"llama.cpp: decoding chunk {c + 1} failed: {result}");
            lockstep?.Cache.Clear();
            for (int i = 0; i < len - 1; i++)
            {
                var logits = handle.GetLogitsIth(i);
                if (logits.Length != vocab) throw new BitMoeException($"llama.cpp returned {logits.Length} logits, expected {vocab}");
                Perplexity.LogSoftmax(logits, logProbs);
                acc.Add(-logProbs[tokens[start + i + 1]]);
                if (lockstep != null)
                {
                    Perplexity.LogSoftmax(lockstep.Forward(tokens[start + i]), ourLogProbs);
                    compare?.Invoke(ourLogProbs, logProbs);
                }
            }
            if (!Console.IsErrorRedirected) Console.Error.Write($"\r[{c + 1}/{chunks.Count}] llama.cpp PPL {acc.Perplexity:F4}   ");
        }
        if (!Console.IsErrorRedirected) Console.Error.WriteLine();
        return acc;
    }
}
