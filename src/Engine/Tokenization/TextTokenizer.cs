using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using BitMoe.Quant;
using Microsoft.ML.Tokenizers;

namespace BitMoe.Engine.Tokenization;

/// <summary>
/// A HuggingFace byte-level BPE tokenizer.json, encoded with Microsoft.ML.Tokenizers' BpeTokenizer
/// (which has no tokenizer.json loader: vocab, merges, added tokens and the pre-tokenizer regex are
/// read here). Decoding maps ids back to bytes so that streamed text never splits a UTF-8 character.
/// </summary>
public sealed class TextTokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly byte[][] _idToBytes;
    private readonly Dictionary<string, int> _special;

    public int VocabSize => _idToBytes.Length;
    /// <summary>Token prepended to every encoded text when the tokenizer's post-processor asks for one.</summary>
    public int? BosId => Data.BosId;
    /// <summary>Added tokens (matched literally in the input), by content.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => _special;
    /// <summary>The definition this tokenizer was built from (written into GGUF files as it is).</summary>
    public TokenizerData Data { get; }

    public TextTokenizer(TokenizerData data, string source)
    {
        Data = data;
        int size = data.Tokens.Length;
        _idToBytes = new byte[size][];
        _special = new Dictionary<string, int>(data.Added, StringComparer.Ordinal);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < size; id++)
        {
            string? tok = data.Tokens[id];
            if (tok == null) { _idToBytes[id] = []; continue; }
            bool added = data.Added.TryGetValue(tok, out int addedId) && addedId == id;
            _idToBytes[id] = added ? Encoding.UTF8.GetBytes(tok) : ByteLevel.TokenToBytes(tok) ?? Encoding.UTF8.GetBytes(tok);
            vocab.TryAdd(tok, id);
        }
        try
        {
            _bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = data.Merges,
                SpecialTokens = _special,
                PreTokenizer = new RegexPreTokenizer(new Regex(data.Pattern, RegexOptions.Compiled), _special),
                ByteLevel = true,
            });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new BitMoeException($"{source}: cannot build the BPE tokenizer ({e.Message})");
        }
    }

    public static TextTokenizer Load(string path)
    {
        if (!File.Exists(path)) throw new BitMoeException($"{path}: tokenizer not found (expected a HuggingFace tokenizer.json)");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new BitMoeException($"{path}: invalid JSON ({e.Message})"); }
        using (doc) return FromJson(doc.RootElement, path);
    }

    public static TextTokenizer FromJson(JsonElement root, string path)
    {
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new BitMoeException($"{path}: no 'model' object");
        string type = model.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "";
        if (type != "BPE") throw new BitMoeException($"{path}: tokenizer model type '{type}' is not supported (expected BPE)");
        if (!model.TryGetProperty("vocab", out var vocabEl) || vocabEl.ValueKind != JsonValueKind.Object)
            throw new BitMoeException($"{path}: BPE model has no 'vocab'");

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in vocabEl.EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();

        var merges = new List<string>();
        if (model.TryGetProperty("merges", out var mergesEl) && mergesEl.ValueKind == JsonValueKind.Array)
        {
            foreach (var m in mergesEl.EnumerateArray())
            {
                // Older files write "a b", newer ones ["a", "b"].
                if (m.ValueKind == JsonValueKind.String) merges.Add(m.GetString()!);
                else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2) merges.Add(m[0].GetString() + " " + m[1].GetString());
                else throw new BitMoeException($"{path}: malformed merge entry {m.GetRawText()}");
            }
        }

        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var specialIds = new HashSet<int>();
        if (root.TryGetProperty("added_tokens", out var addedEl) && addedEl.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in addedEl.EnumerateArray())
            {
                int id = a.GetProperty("id").GetInt32();
                added[a.GetProperty("content").GetString()!] = id;
                if (a.TryGetProperty("special", out var sp) && sp.ValueKind == JsonValueKind.True) specialIds.Add(id);
            }
        }

        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Values.Max() + 1);
        var tokens = new string?[size];
        foreach (var (tok, id) in vocab) tokens[id] = tok;
        foreach (var (content, id) in added) tokens[id] = content;
        var data = new TokenizerData(tokens, merges, added, specialIds, PreTokenizerPattern(root, path), BosFromPostProcessor(root, added));
        return new TextTokenizer(data, path);
    }

    /// <summary>The split regex: ByteLevel with use_regex, or a Sequence of Split(Regex) + ByteLevel (Llama 3 style).</summary>
    private static string PreTokenizerPattern(JsonElement root, string path)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object)
            throw new BitMoeException($"{path}: no pre_tokenizer; only byte-level BPE tokenizers are supported");
        string type = pre.GetProperty("type").GetString() ?? "";
        if (type == "ByteLevel")
        {
            if (pre.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True)
                throw new BitMoeException($"{path}: ByteLevel add_prefix_space=true is not supported");
            return TokenizerData.Gpt2Pattern;
        }
        if (type == "Sequence" && pre.TryGetProperty("pretokenizers", out var seq))
        {
            foreach (var p in seq.EnumerateArray())
                if (p.GetProperty("type").GetString() == "Split" && p.TryGetProperty("pattern", out var pat) && pat.TryGetProperty("Regex", out var rx))
                    return rx.GetString()!;
        }
        throw new BitMoeException($"{path}: pre_tokenizer type '{type}' is not supported (expected ByteLevel)");
    }

    /// <summary>A TemplateProcessing post-processor whose single template starts with a special token asks for a BOS.</summary>
    private static int? BosFromPostProcessor(JsonElement root, Dictionary<string, int> special)
    {
        if (!root.TryGetProperty("post_processor", out var pp) || pp.ValueKind != JsonValueKind.Object) return null;
        if (pp.GetProperty("type").GetString() != "TemplateProcessing") return null;
        if (!pp.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array || single.GetArrayLength() == 0) return null;
        var first = single[0];
        if (first.TryGetProperty("SpecialToken", out var st) && st.TryGetProperty("id", out var idEl))
            return special.TryGetValue(idEl.GetString()!, out int id) ? id : null;
        return null;
    }

    /// <summary>Token ids of <paramref name="text"/>; special tokens written literally become their ids.</summary>
    public int[] Encode(string text, bool addBos = true)
    {
        var ids = _bpe.EncodeToIds(text);
        if (addBos && BosId is int bos) return [bos, .. ids];
        return ids.ToArray();
    }

    public byte[] TokenBytes(int id) => (uint)id < (uint)_idToBytes.Length ? _idToBytes[id] : [];

    public string? TokenString(int id) => (uint)id < (uint)Data.Tokens.Length ? Data.Tokens[id] : null;

    public int? TokenId(string token) =>
        _special.TryGetValue(token, out int id) ? id : _bpe.Vocabulary.TryGetValue(token, out id) ? id : null;

    /// <summary>The end-of-text token by its usual names (&lt;|endoftext|&gt;, &lt;/s&gt;, &lt;|end_of_text|&gt;), when the vocabulary has one.</summary>
    public int? EndOfTextId => TokenId("<|endoftext|>") ?? TokenId("</s>") ?? TokenId("<|end_of_text|>");

    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids) bytes.AddRange(TokenBytes(id));
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}

/// <summary>Turns a stream of token ids into text, holding back bytes of a UTF-8 character that is not complete yet.</summary>
public sealed class TokenTextStream(TextTokenizer tokenizer)
{
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private readonly char[] _chars = new char[1024];

    public string Push(int id)
    {
        var bytes = tokenizer.TokenBytes(id);
        if (bytes.Length == 0) return "";
        var chars = bytes.Length * 2 <= _chars.Length ? _chars : new char[bytes.Length * 2];
        int n = _utf8.GetChars(bytes, 0, bytes.Length, chars, 0, flush: false);
        return new string(chars, 0, n);
    }

    public string Flush()
    {
        int n = _utf8.GetChars([], 0, 0, _chars, 0, flush: true);
        return new string(_chars, 0, n);
    }
}
