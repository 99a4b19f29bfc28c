using System.Diagnostics;
using BitMoe.Engine.Sampling;
using BitMoe.Engine.Tokenization;
using BitMoe.Quant;

namespace BitMoe.Engine.Generation;

/// <summary>What one generation did, for the speed line the CLI prints.</summary>
public sealed record GenerationStats(int PromptTokens, double PromptSeconds, int GeneratedTokens, double GenerateSeconds, string StopReason)
{
    public double PromptTokensPerSecond => PromptTokens / Math.Max(PromptSeconds, 1e-9);
    public double GenerateTokensPerSecond => GeneratedTokens / Math.Max(GenerateSeconds, 1e-9);
}

/// <summary>
/// Evaluates a prompt, then samples one token at a time, streaming text as soon as it is whole.
/// The KV cache carries over between calls, so a chat continues where it left off.
/// </summary>
public sealed class Generator(LoadedModel model)
{
    private readonly List<int> _history = [];

    /// <summary>Every token in the cache, in order.</summary>
    public IReadOnlyList<int> History => _history;

    public void Reset()
    {
        model.Transformer.Cache.Clear();
        _history.Clear();
        _pendingStop = null;
    }

    /// <summary>
    /// Keeps the first <paramref name="length"/> tokens and forgets the rest (cache and history), so that tokens
    /// can be taken back; also drops a token that is in the history but was never evaluated (a reply cut by a full context).
    /// </summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > _history.Count) throw new ArgumentOutOfRangeException(nameof(length));
        var cache = model.Transformer.Cache;
        if (length < cache.Length) cache.Truncate(length);
        _history.RemoveRange(length, _history.Count - length);
    }

    /// <summary>
    /// Appends <paramref name="tokens"/> to the context, evaluated as batches (<see cref="Transformer.ForwardBatch"/>);
    /// returns the logits after the last one (empty when there are no tokens).
    /// </summary>
    public ReadOnlySpan<float> Feed(IReadOnlyList<int> tokens)
    {
        var t = model.Transformer;
        if (t.Cache.Length + tokens.Count > t.ContextLength)
            throw new BitMoeException($"the prompt needs {t.Cache.Length + tokens.Count} positions but the context holds {t.ContextLength} (raise -c)");
        if (tokens.Count == 0) return default;
        var ids = tokens as int[] ?? tokens.ToArray();
        var logits = t.ForwardBatch(ids);
        _history.AddRange(ids);
        return logits;
    }

    /// <summary>
    /// Feeds <paramref name="prompt"/>, then generates up to <paramref name="maxTokens"/> tokens
    /// (negative: until end of sequence or a full context), calling <paramref name="onText"/> with each piece.
    /// </summary>
    public GenerationStats Generate(IReadOnlyList<int> prompt, int maxTokens, Sampler sampler, Action<string> onText,
        Func<int, bool>? isStopToken = null, CancellationToken cancel = default)
    {
        if (prompt.Count == 0) throw new BitMoeException("the prompt is empty (no tokens to start from)");
        var t = model.Transformer;
        var stream = new TokenTextStream(model.Tokenizer);
        var sw = Stopwatch.StartNew();
        var logits = Feed(prompt);
        double promptSeconds = sw.Elapsed.TotalSeconds;

        sw.Restart();
        int generated = 0;
        string reason = "length";
        var eos = model.EosId;
        while (maxTokens < 0 || generated < maxTokens)
        {
            if (cancel.IsCancellationRequested) { reason = "cancelled"; break; }
            int next = sampler.Sample(logits, _history);
            if (next == eos || (isStopToken?.Invoke(next) ?? false)) { reason = "eos"; _pendingStop = next; break; }
            generated++;
            onText(stream.Push(next));
            if (t.Cache.Length >= t.ContextLength) { _history.Add(next); reason = "context"; break; }
            logits = t.Forward(next);
            _history.Add(next);
        }
        onText(stream.Flush());
        return new GenerationStats(prompt.Count, promptSeconds, generated, sw.Elapsed.TotalSeconds, reason);
    }

    private int? _pendingStop;

    /// <summary>The stop token sampled last (not yet in the cache); chat feeds it before the next turn.</summary>
    public int? TakePendingStop()
    {
        var s = _pendingStop;
        _pendingStop = null;
        return s;
    }
}
