using System.Text;
using BitMoe.Engine.Sampling;
using BitMoe.Quant;

namespace BitMoe.Engine.Generation;

public sealed record ChatOptions
{
    /// <summary>System prompt, fed once at the start and again after <see cref="ChatSession.Reset"/>; null: none.</summary>
    public string? System { get; init; }
    /// <summary>Tokens per reply; negative: until the end of the turn.</summary>
    public int MaxTokens { get; init; } = -1;
    /// <summary>When the context is full, slide the window instead of refusing the turn.</summary>
    public bool ContextShift { get; init; }
}

/// <summary>What one turn did.</summary>
/// <param name="Reply">The reply as shown (stop text removed).</param>
/// <param name="FedTokens">Tokens of the new turn fed to the model: the previous reply's closing tokens, the user's message and the assistant prefix.</param>
/// <param name="GeneratedTokens">Tokens the model generated (without the stop token).</param>
/// <param name="EvaluatedTokens">Forward passes this turn ran, including re-evaluation after a context shift.</param>
/// <param name="StopReason">eos (end of turn), length (-n reached), context (the context is full), or refused.</param>
/// <param name="Shifts">How many times the window slid during this turn.</param>
/// <param name="Message">Why the turn was refused (the context is full), else null.</param>
public sealed record ChatTurnResult(int Turn, string Reply, int FedTokens, int GeneratedTokens, long EvaluatedTokens,
    string StopReason, int Shifts, double PromptSeconds, double GenerateSeconds, string? Message = null)
{
    public bool Refused => Message != null;
}

/// <summary>
/// A multi-turn conversation whose history lives in the KV cache: each turn feeds only its new tokens
/// (the closing tokens of the previous reply, the user's message, the assistant prefix) and never
/// evaluates earlier turns again.
/// <para>
/// When a turn does not fit in the context it is refused, or with <see cref="ChatOptions.ContextShift"/> the
/// window slides: RoPE has already rotated every cached key by its absolute position, so the cache cannot be
/// shifted in place. Sliding keeps the system prompt and the most recent half of the conversation (from the
/// start of a user turn where one lies in that half), clears the cache and evaluates the kept tokens again.
/// </para>
/// </summary>
public sealed class ChatSession
{
    private readonly LoadedModel _model;
    private readonly Generator _generator;
    private readonly Sampler _sampler;
    private readonly HashSet<int> _stopTokens = [];
    private int[] _preamble = [];
    /// <summary>Tokens of the conversation to feed before the next turn (the previous reply's end), not yet in the cache.</summary>
    private readonly List<int> _pending = [];
    /// <summary>Positions in <see cref="Generator.History"/> where a user turn starts.</summary>
    private readonly List<int> _turnStarts = [];

    public ChatTemplate Template { get; }
    public ChatOptions Options { get; }
    public Generator Generator => _generator;
    public int Turns { get; private set; }
    /// <summary>Tokens of the system prompt (the template's preamble), fed at the start and after a reset.</summary>
    public int PreambleTokens => _preamble.Length;
    public int CacheLength => _model.Transformer.Cache.Length;
    public int ContextLength => _model.Transformer.ContextLength;
    /// <summary>Forward passes since the session started: the preamble, every turn and any re-evaluation.</summary>
    public long TokensEvaluated { get; private set; }

    public ChatSession(LoadedModel model, ChatTemplate template, Sampler sampler, ChatOptions options)
    {
        _model = model; Template = template; _sampler = sampler; Options = options;
        _generator = new Generator(model);
        foreach (var s in template.StopTokens)
            if (model.Tokenizer.TokenId(s) is int id) _stopTokens.Add(id);

        var tok = model.Tokenizer;
        string preambleText = template.Preamble(options.System);
        _preamble = tok.Encode(preambleText, addBos: !template.WritesBos);
        if (options.System != null && _preamble.Length >= ContextLength)
            throw new BitMoeException($"--system: the system prompt needs {_preamble.Length} tokens but the context holds {ContextLength}");
        if (_preamble.Length >= ContextLength)
            throw new BitMoeException($"the {template.Name} template's start needs {_preamble.Length} tokens but the context holds {ContextLength} (raise -c)");
        Reset();
    }

    /// <summary>Forgets the conversation: clears the cache and feeds the system prompt again.</summary>
    public void Reset()
    {
        _generator.Reset();
        _pending.Clear();
        _turnStarts.Clear();
        Feed(_preamble);
    }

    private void Feed(IReadOnlyList<int> tokens)
    {
        if (tokens.Count == 0) return;
        long before = _model.Transformer.TokensEvaluated;
        _generator.Feed(tokens);
        TokensEvaluated += _model.Transformer.TokensEvaluated - before;
    }

    /// <summary>
    /// One turn: feeds the user's message and streams the reply to <paramref name="onText"/>.
    /// A turn that does not fit in the context (without <see cref="ChatOptions.ContextShift"/>) is refused:
    /// nothing is fed and the result carries the message.
    /// </summary>
    public ChatTurnResult Send(string user, Action<string> onText, CancellationToken cancel = default)
    {
        var tok = _model.Tokenizer;
        long evaluatedBefore = TokensEvaluated;
        int shifts = 0;

        var turn = tok.Encode(Template.UserTurn(user), addBos: false);
        // The new tokens: the previous reply's end (already in _pending), then the user turn.
        int need = _pending.Count + turn.Length + 1; // + 1: room for at least one reply token
        int free = ContextLength - CacheLength;
        if (need > free)
        {
            if (!Options.ContextShift || PreambleTokens + turn.Length + 1 > ContextLength)
            {
                string msg = Options.ContextShift
                    ? $"the message needs {turn.Length} tokens, too many for a context of {ContextLength} after the system prompt ({PreambleTokens}); raise -c or write less"
                    : $"the context is full: this turn needs {need} tokens but {free} of {ContextLength} are free; /reset starts over, --context-shift slides the window, -c raises the size";
                return new ChatTurnResult(Turns + 1, "", 0, 0, 0, "refused", 0, 0, 0, msg);
            }
            Shift(turn.Length + 1);
            shifts++;
        }

        Turns++;
        var fed = new List<int>(_pending.Count + turn.Length);
        fed.AddRange(_pending);
        _pending.Clear();
        _turnStarts.Add(_generator.History.Count + fed.Count);
        fed.AddRange(turn);

        var filter = new StopTextFilter(Template.StopStrings, onText);
        int replyStart = _generator.History.Count + fed.Count;
        int remaining = Options.MaxTokens;
        int generated = 0;
        double promptSeconds = 0, genSeconds = 0;
        string reason;
        IReadOnlyList<int> prompt = fed;
        while (true)
        {
            using var stopCts = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            long before = _model.Transformer.TokensEvaluated;
            var stats = _generator.Generate(prompt, remaining, _sampler, piece =>
            {
                if (filter.Push(piece)) stopCts.Cancel();
            }, _stopTokens.Contains, stopCts.Token);
            TokensEvaluated += _model.Transformer.TokensEvaluated - before;
            promptSeconds += stats.PromptSeconds; genSeconds += stats.GenerateSeconds;
            generated += stats.GeneratedTokens;
            if (remaining >= 0) remaining -= stats.GeneratedTokens;
            reason = stats.StopReason;
            if (filter.Stopped) { reason = "eos"; break; }
            if (reason == "context" && remaining == 0) { reason = "length"; break; } // the last token allowed filled the context
            if (reason != "context" || !Options.ContextShift) break;

            // The reply ran into the end of the context: slide the window and go on generating. The token
            // sampled last is in the history but not in the cache; it becomes the prompt of the next round.
            int last = _generator.History[^1];
            _generator.Truncate(CacheLength);
            int keptFrom = Shift(2);
            replyStart = Math.Max(PreambleTokens, replyStart - keptFrom + PreambleTokens);
            prompt = [last];
            shifts++;
        }
        filter.Flush();

        // Close the reply in the form the template writes it, before the next turn.
        var closing = new StringBuilder();
        if (filter.Stopped)
        {
            // The stop text is in the cache: take the reply's tokens back to the last one inside the shown text,
            // and write the rest of the shown text again with the closing text.
            var replyTokens = _generator.History.Skip(replyStart).ToList();
            int keep = replyTokens.Count;
            string raw = filter.RawText, kept = "";
            for (; keep > 0; keep--)
            {
                kept = tok.Decode(replyTokens.Take(keep));
                if (raw.StartsWith(kept, StringComparison.Ordinal)) break;
            }
            if (keep == 0) kept = "";
            _generator.Truncate(replyStart + keep);
            closing.Append(raw.AsSpan(kept.Length));
            _generator.TakePendingStop();
            closing.Append(Template.ReplyEnd);
            _pending.AddRange(tok.Encode(closing.ToString(), addBos: false));
        }
        else
        {
            if (_generator.History.Count > CacheLength)
            {
                // A reply cut by a full context: its last token was shown but not evaluated.
                _pending.Add(_generator.History[^1]);
                _generator.Truncate(CacheLength);
            }
            int? stop = _generator.TakePendingStop();
            string? stopText = stop is int s ? tok.TokenString(s) : null;
            if (stop is int st && _stopTokens.Contains(st) && stopText != null && Template.ReplyEnd.StartsWith(stopText, StringComparison.Ordinal))
            {
                // The model's own stop token, then the rest of the closing text.
                _pending.Add(st);
                _pending.AddRange(tok.Encode(Template.ReplyEnd[stopText.Length..], addBos: false));
            }
            else _pending.AddRange(tok.Encode(Template.ReplyEnd, addBos: false));
        }

        return new ChatTurnResult(Turns, filter.Shown, fed.Count, generated, TokensEvaluated - evaluatedBefore, reason, shifts,
            promptSeconds, genSeconds);
    }

    /// <summary>
    /// Slides the window so that at least <paramref name="room"/> positions (plus the pending tokens) are free:
    /// keeps the preamble and the most recent half of the conversation, starting at a user turn where one lies
    /// in that half, clears the cache and evaluates the kept tokens again. Returns the history position the
    /// kept conversation starts at.
    /// </summary>
    private int Shift(int room)
    {
        var all = new List<int>(_generator.History.Take(CacheLength));
        all.AddRange(_pending);
        int pre = PreambleTokens;
        int conversation = all.Count - pre;
        int budget = ContextLength - pre - room;
        int keepLen = Math.Max(0, Math.Min(conversation / 2, budget));
        int from = all.Count - keepLen;
        // Prefer a clean cut at the first user turn inside the kept half.
        int turnStart = _turnStarts.FirstOrDefault(s => s >= from && s <= all.Count, -1);
        if (turnStart >= 0) from = turnStart;

        var kept = new List<int>(pre + all.Count - from);
        kept.AddRange(all.Take(pre));
        kept.AddRange(all.Skip(from));
        int shift = from - pre;
        var starts = _turnStarts.Where(s => s >= from).Select(s => s - shift).ToList();

        _generator.Reset();
        _pending.Clear();
        Feed(kept);
        _turnStarts.Clear();
        _turnStarts.AddRange(starts);
        return from;
    }
}

/// <summary>
/// Passes reply text on as it streams, holding back any tail that could be the start of a stop string,
/// and stops at the first stop string. Leading whitespace of the reply is not shown.
/// </summary>
public sealed class StopTextFilter(IReadOnlyList<string> stops, Action<string> onText)
{
    private readonly StringBuilder _raw = new();
    private readonly StringBuilder _shown = new();
    private int _emitted;

    public bool Stopped { get; private set; }
    /// <summary>The reply text before the stop string (or all of it).</summary>
    public string RawText => Stopped ? _raw.ToString(0, _stopAt) : _raw.ToString();
    public string Shown => _shown.ToString();
    private int _stopAt;

    /// <summary>Returns true when the text has reached a stop string.</summary>
    public bool Push(string piece)
    {
        if (Stopped || piece.Length == 0) return Stopped;
        _raw.Append(piece);
        string raw = _raw.ToString();
        int end = raw.Length;
        foreach (var s in stops)
        {
            int at = raw.IndexOf(s, Math.Max(0, _emitted - s.Length), StringComparison.Ordinal);
            if (at >= 0 && at < end) { end = at; Stopped = true; }
        }
        if (Stopped) { _stopAt = end; Emit(raw, end); return true; }
        // Hold back the longest tail that is a prefix of a stop string.
        int hold = 0;
        foreach (var s in stops)
            for (int k = Math.Min(s.Length - 1, raw.Length); k > hold; k--)
                if (raw.AsSpan(raw.Length - k).SequenceEqual(s.AsSpan(0, k))) { hold = k; break; }
        Emit(raw, raw.Length - hold);
        return false;
    }

    public void Flush()
    {
        if (!Stopped) Emit(_raw.ToString(), _raw.Length);
    }

    private void Emit(string raw, int upTo)
    {
        if (upTo <= _emitted) return;
        string text = raw[_emitted..upTo];
        _emitted = upTo;
        if (_shown.Length == 0) text = text.TrimStart();
        if (text.Length == 0) return;
        _shown.Append(text);
        onText(text);
    }
}
