namespace BitMoe.Engine.Tokenization;

/// <summary>
/// Everything that defines a byte-level BPE tokenizer, whatever file it came from (tokenizer.json
/// or a GGUF file's tokenizer.ggml.* keys): tokens by id, merges by rank, added tokens (matched
/// literally before BPE; <see cref="SpecialIds"/> marks the special ones), the pre-tokenizer regex,
/// and the BOS the tokenizer asks for, if any.
/// </summary>
public sealed record TokenizerData(
    string?[] Tokens,
    IReadOnlyList<string> Merges,
    IReadOnlyDictionary<string, int> Added,
    IReadOnlySet<int> SpecialIds,
    string Pattern,
    int? BosId)
{
    /// <summary>GPT-2's pre-tokenizer pattern, used by the HF ByteLevel pre-tokenizer when use_regex is true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
}
