using BitMoe.Engine.Tokenization;
using BitMoe.Quant;

namespace BitMoe.Engine.Generation;

/// <summary>
/// How a conversation is written as text for the model, one piece at a time, so that a chat feeds
/// only what is new: <see cref="Preamble"/> once at the start (beginning of text, system prompt),
/// then per turn <see cref="UserTurn"/> (the user's message and the assistant prefix); after the
/// model's reply, <see cref="ReplyEnd"/> closes it before the next user turn.
/// The reply ends at one of <see cref="StopTokens"/>, at the model's end-of-text token, or when
/// its text reaches one of <see cref="StopStrings"/> (for templates without special tokens).
/// </summary>
public abstract class ChatTemplate
{
    /// <summary>Every template <see cref="FromName"/> knows, in the order the help text lists them.</summary>
    public static IReadOnlyList<string> Names { get; } = ["chatml", "llama3", "zephyr", "plain"];

    public abstract string Name { get; }

    /// <summary>Text fed once when the chat starts (and again after /reset); may be empty.</summary>
    public abstract string Preamble(string? system);

    /// <summary>The user's message followed by the prefix the assistant's reply continues.</summary>
    public abstract string UserTurn(string user);

    /// <summary>Text that closes an assistant reply; when the reply ended with a stop token, that token is its start.</summary>
    public abstract string ReplyEnd { get; }

    /// <summary>Special tokens (by their text) that end a reply, besides the model's end-of-text token.</summary>
    public virtual IReadOnlyList<string> StopTokens => [];

    /// <summary>Text that ends a reply when the model writes it (it is not shown, and is taken back out of the cache).</summary>
    public virtual IReadOnlyList<string> StopStrings => [];

    /// <summary>Special tokens the tokenizer must have for this template to make sense.</summary>
    public virtual IReadOnlyList<string> RequiredTokens => [];

    /// <summary>True when <see cref="Preamble"/> writes the beginning-of-text token itself, so the tokenizer's BOS is not added.</summary>
    public virtual bool WritesBos => false;

    /// <summary>The template called <paramref name="name"/> (case-insensitive); an unknown name lists the known ones.</summary>
    public static ChatTemplate FromName(string name) => name.Trim().ToLowerInvariant() switch
    {
        "chatml" => new ChatMlTemplate(),
        "llama3" or "llama-3" => new Llama3Template(),
        "zephyr" => new ZephyrTemplate(),
        "plain" => new PlainTemplate(),
        _ => throw new BitMoeException($"--template: unknown chat template '{name}' (known: {string.Join(", ", Names)})"),
    };

    /// <summary>
    /// The template for <paramref name="model"/>: <paramref name="explicitName"/> (--template) when given, else the
    /// model's own (config.json <c>bitmoe_chat_template</c>), else chatml when the tokenizer has &lt;|im_start|&gt; and
    /// &lt;|im_end|&gt;, else plain. The choice is checked against the tokenizer.
    /// </summary>
    public static ChatTemplate Default(LoadedModel model, string? explicitName = null) =>
        Choose(explicitName, model.Config.ChatTemplate, model.Tokenizer);

    public static ChatTemplate Choose(string? explicitName, string? metadataName, TextTokenizer tokenizer)
    {
        ChatTemplate template;
        if (!string.IsNullOrWhiteSpace(explicitName)) template = FromName(explicitName);
        else if (!string.IsNullOrWhiteSpace(metadataName))
        {
            try { template = FromName(metadataName); }
            catch (BitMoeException)
            {
                throw new BitMoeException($"the model's chat template '{metadataName}' (config.json bitmoe_chat_template) is unknown " +
                    $"(known: {string.Join(", ", Names)}); choose one with --template");
            }
        }
        else if (tokenizer.SpecialTokens.ContainsKey("<|im_start|>") && tokenizer.SpecialTokens.ContainsKey("<|im_end|>")) template = new ChatMlTemplate();
        else template = new PlainTemplate();

        foreach (var token in template.RequiredTokens)
            if (!tokenizer.SpecialTokens.ContainsKey(token))
                throw new BitMoeException($"--template {template.Name}: the tokenizer has no {token} token; choose another template (known: {string.Join(", ", Names)})");
        return template;
    }
}

/// <summary>ChatML (Qwen, many fine-tunes): <c>&lt;|im_start|&gt;role\n...&lt;|im_end|&gt;\n</c>.</summary>
public sealed class ChatMlTemplate : ChatTemplate
{
    public override string Name => "chatml";
    public override string Preamble(string? system) => system == null ? "" : $"<|im_start|>system\n{system}<|im_end|>\n";
    public override string UserTurn(string user) => $"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n";
    public override string ReplyEnd => "<|im_end|>\n";
    public override IReadOnlyList<string> StopTokens => ["<|im_end|>"];
    public override IReadOnlyList<string> RequiredTokens => ["<|im_start|>", "<|im_end|>"];
}

/// <summary>Llama 3 instruct: <c>&lt;|begin_of_text|&gt;</c> once, then <c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\n...&lt;|eot_id|&gt;</c>.</summary>
public sealed class Llama3Template : ChatTemplate
{
    public override string Name => "llama3";
    public override string Preamble(string? system) =>
        "<|begin_of_text|>" + (system == null ? "" : $"<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>");
    public override string UserTurn(string user) =>
        $"<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    public override string ReplyEnd => "<|eot_id|>";
    public override IReadOnlyList<string> StopTokens => ["<|eot_id|>"];
    public override IReadOnlyList<string> RequiredTokens => ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"];
    public override bool WritesBos => true;
}

/// <summary>Zephyr: <c>&lt;|user|&gt;\n...&lt;/s&gt;\n&lt;|assistant|&gt;\n</c> (the role tags are plain text, &lt;/s&gt; is special).</summary>
public sealed class ZephyrTemplate : ChatTemplate
{
    public override string Name => "zephyr";
    public override string Preamble(string? system) => system == null ? "" : $"<|system|>\n{system}</s>\n";
    public override string UserTurn(string user) => $"<|user|>\n{user}</s>\n<|assistant|>\n";
    public override string ReplyEnd => "</s>\n";
    public override IReadOnlyList<string> StopTokens => ["</s>"];
    public override IReadOnlyList<string> RequiredTokens => ["</s>"];
}

/// <summary>
/// A plain "User: ...\nAssistant: ..." transcript for base models that know no chat tokens. The reply
/// ends when the model starts the next "User:" line (or writes end-of-text).
/// </summary>
public sealed class PlainTemplate : ChatTemplate
{
    public override string Name => "plain";
    public override string Preamble(string? system) => system == null ? "" : system + "\n\n";
    public override string UserTurn(string user) => $"User: {user}\nAssistant:";
    public override string ReplyEnd => "\n";
    public override IReadOnlyList<string> StopStrings => ["\nUser:"];
}
