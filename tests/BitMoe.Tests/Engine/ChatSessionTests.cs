using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BitMoe.Engine;
using BitMoe.Engine.Generation;
using BitMoe.Engine.Layers;
using BitMoe.Engine.Sampling;
using BitMoe.Engine.Tokenization;
using BitMoe.Quant;

namespace BitMoe.Tests.Engine;

/// <summary>ChatSession and the chat templates on a fixture checkpoint (random weights, greedy sampling).</summary>
public class ChatSessionTests
{
    public const string Fixture = "mhmoe_h2_top2_bitnet";
    public static readonly string[] Messages = ["hello there", "how are you?", "tell me more"];

    public static LoadedModel Load(int ctx = 256) => ModelLoader.Load(Fixtures.Dir(Fixture), ExecutionMode.Fp, ctx);

    public static ChatSession Session(LoadedModel model, ChatOptions options, ChatTemplate? template = null) =>
        new(model, template ?? ChatTemplate.Default(model), new Sampler(new SamplingParams { Temperature = 0, Seed = 1 }, model.Config.VocabSize), options);

    private static ChatTurnResult Send(ChatSession session, string message, StringBuilder? streamed = null) =>
        session.Send(message, piece => streamed?.Append(piece));

    [Fact]
    public void LaterTurnsEvaluateOnlyTheirNewTokens()
    {
        using var model = Load();
        var tok = model.Tokenizer;
        const string system = "You are a test.";
        var session = Session(model, new ChatOptions { System = system, MaxTokens = 8 });
        var template = session.Template;
        Assert.Equal("chatml", template.Name);
        Assert.Equal(tok.Encode(template.Preamble(system)).Length, session.CacheLength);

        var transcript = new StringBuilder(template.Preamble(system));
        for (int i = 0; i < Messages.Length; i++)
        {
            int cacheBefore = session.CacheLength;
            long before = model.Transformer.TokensEvaluated;
            var streamed = new StringBuilder();
            var r = Send(session, Messages[i], streamed);
            long evaluated = model.Transformer.TokensEvaluated - before;

            // The new turn: the previous reply's end (its stop token or the closing text), the message, the assistant prefix.
            int expectedFed = tok.Encode(template.UserTurn(Messages[i]), addBos: false).Length
                + (i > 0 ? tok.Encode(template.ReplyEnd, addBos: false).Length : 0);
            Assert.Equal(expectedFed, r.FedTokens);
            Assert.True(r.GeneratedTokens <= 8);
            Assert.Equal(r.FedTokens + r.GeneratedTokens, evaluated);
            Assert.Equal(evaluated, r.EvaluatedTokens);
            Assert.Equal(cacheBefore + evaluated, session.CacheLength);
            Assert.Equal(0, r.Shifts);
            Assert.Equal(streamed.ToString(), r.Reply);
            if (i > 0) Assert.True(r.FedTokens < cacheBefore, "a later turn must not feed the earlier turns again");

            if (i > 0) transcript.Append(template.ReplyEnd);
            transcript.Append(template.UserTurn(Messages[i]));
            int replyStart = session.CacheLength - r.GeneratedTokens;
            transcript.Append(tok.Decode(session.Generator.History.Skip(replyStart)));
        }
        // The cache holds exactly the conversation as the template writes it, each turn once.
        Assert.Equal(transcript.ToString(), tok.Decode(session.Generator.History));
        Assert.Equal(session.CacheLength, session.Generator.History.Count);
    }

    [Fact]
    public void ResetLeavesOnlyTheSystemPromptAndRepeatsTheFirstReply()
    {
        using var model = Load();
        var session = Session(model, new ChatOptions { System = "Be brief.", MaxTokens = 6 });
        int systemTokens = model.Tokenizer.Encode(session.Template.Preamble("Be brief.")).Length;
        var first = Send(session, Messages[0]);
        Send(session, Messages[1]);

        session.Reset();
        Assert.Equal(systemTokens, session.CacheLength);
        Assert.Equal(systemTokens, session.PreambleTokens);
        Assert.Equal(systemTokens, session.Generator.History.Count);

        var again = Send(session, Messages[0]);
        Assert.Equal(first.FedTokens, again.FedTokens); // nothing of the old conversation is fed
        Assert.Equal(first.Reply, again.Reply);
    }

    [Fact]
    public void SystemPromptLongerThanTheContextIsRejected()
    {
        using var model = Load(ctx: 16);
        var e = Assert.Throws<BitMoeException>(() => Session(model, new ChatOptions { System = string.Concat(Enumerable.Repeat("long text ", 20)) }));
        Assert.StartsWith("--system: the system prompt needs ", e.Message);
        Assert.EndsWith("but the context holds 16", e.Message);
    }

    [Fact]
    public void FullContextRefusesTheTurnWithoutShift()
    {
        using var model = Load(ctx: 48);
        var session = Session(model, new ChatOptions { MaxTokens = 5 });
        ChatTurnResult? refused = null;
        for (int i = 0; i < 6 && refused == null; i++)
        {
            int cacheBefore = session.CacheLength;
            var r = Send(session, Messages[i % Messages.Length]);
            if (r.Refused) { refused = r; Assert.Equal(cacheBefore, session.CacheLength); }
            Assert.True(session.CacheLength <= 48);
        }
        Assert.NotNull(refused);
        Assert.Contains("the context is full", refused.Message);
        Assert.Equal("refused", refused.StopReason);
        // /reset makes room again.
        session.Reset();
        Assert.False(Send(session, Messages[0]).Refused);
    }

    [Fact]
    public void ContextShiftKeepsTheSystemPromptAndGoesOn()
    {
        using var model = Load(ctx: 48);
        var session = Session(model, new ChatOptions { System = "Be brief.", MaxTokens = 5, ContextShift = true });
        var preamble = session.Generator.History.ToArray();
        int shifts = 0;
        for (int i = 0; i < 6; i++)
        {
            var r = Send(session, Messages[i % Messages.Length]);
            Assert.False(r.Refused);
            shifts += r.Shifts;
            Assert.True(session.CacheLength <= 48);
            Assert.Equal(preamble, session.Generator.History.Take(preamble.Length));
        }
        Assert.True(shifts > 0);

        // A reply longer than the whole context slides the window while it is being generated.
        session = Session(model, new ChatOptions { MaxTokens = 80, ContextShift = true });
        var r2 = Send(session, Messages[0]);
        Assert.Equal(80, r2.GeneratedTokens);
        Assert.True(r2.Shifts > 0);
        Assert.Equal("length", r2.StopReason);
    }

    [Fact]
    public void StopStringEndsTheReplyAndIsTakenBackOutOfTheCache()
    {
        using var model = Load();
        var tok = model.Tokenizer;
        var free = Session(model, new ChatOptions { MaxTokens = 12 }, new TestTemplate([]));
        string reply = free.Send(Messages[0], _ => { }).Reply;
        // A two-letter piece of the greedy reply, first seen after at least two characters.
        int at = Enumerable.Range(2, Math.Max(0, reply.Length - 3))
            .First(i => char.IsAsciiLetter(reply[i]) && char.IsAsciiLetter(reply[i + 1]) && reply.IndexOf(reply.Substring(i, 2), StringComparison.Ordinal) == i);
        string stop = reply.Substring(at, 2);

        var template = new TestTemplate([stop]);
        var session = Session(model, new ChatOptions { MaxTokens = 12 }, template);
        var streamed = new StringBuilder();
        var r = session.Send(Messages[0], p => streamed.Append(p));
        Assert.Equal("eos", r.StopReason);
        Assert.Equal(reply[..at].TrimStart(), r.Reply);
        Assert.Equal(r.Reply, streamed.ToString());
        int turnTokens = tok.Encode(template.UserTurn(Messages[0]), addBos: false).Length;
        Assert.Equal(turnTokens, r.FedTokens);
        Assert.DoesNotContain(stop, tok.Decode(session.Generator.History.Skip(turnTokens)));

        // The next turn writes the shown reply's missing tail and the closing text, so the cache holds the transcript.
        session.Send(Messages[1], _ => { });
        string text = tok.Decode(session.Generator.History);
        string turn0 = template.UserTurn(Messages[0]), next = template.ReplyEnd + template.UserTurn(Messages[1]);
        Assert.StartsWith(turn0, text);
        int end = text.IndexOf(next, turn0.Length, StringComparison.Ordinal);
        Assert.True(end > 0, text);
        Assert.Equal(reply[..at].Trim(), text[turn0.Length..end].Trim());
    }

    /// <summary>A transcript template with the given stop strings.</summary>
    private sealed class TestTemplate(string[] stops) : ChatTemplate
    {
        public override string Name => "test";
        public override string Preamble(string? system) => "";
        public override string UserTurn(string user) => $"Q: {user}\nA:";
        public override string ReplyEnd => "\n";
        public override IReadOnlyList<string> StopStrings => stops;
    }

    [Fact]
    public void StopTextFilterHoldsBackAPossibleStopAndStopsAtIt()
    {
        var shown = new StringBuilder();
        var f = new StopTextFilter(["\nUser:"], s => shown.Append(s));
        Assert.False(f.Push(" Hel"));
        Assert.False(f.Push("lo\nUs"));
        Assert.Equal("Hello", shown.ToString()); // leading space dropped, "\nUs" held back
        Assert.True(f.Push("er: next"));
        Assert.True(f.Stopped);
        Assert.Equal("Hello", shown.ToString());
        Assert.Equal(" Hello", f.RawText);

        shown.Clear();
        f = new StopTextFilter(["\nUser:"], s => shown.Append(s));
        f.Push("a\nUs");
        f.Push("ed");
        f.Flush();
        Assert.Equal("a\nUsed", shown.ToString());
        Assert.False(f.Stopped);
    }

    [Fact]
    public void TemplatesByName()
    {
        foreach (var name in ChatTemplate.Names) Assert.Equal(name, ChatTemplate.FromName(name).Name);
        Assert.Equal("chatml", ChatTemplate.FromName(" ChatML ").Name);
        var e = Assert.Throws<BitMoeException>(() => ChatTemplate.FromName("nope"));
        Assert.Equal("--template: unknown chat template 'nope' (known: chatml, llama3, zephyr, plain)", e.Message);

        var chatml = ChatTemplate.FromName("chatml");
        Assert.Equal("<|im_start|>system\nS<|im_end|>\n", chatml.Preamble("S"));
        Assert.Equal("", chatml.Preamble(null));
        Assert.Equal("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", chatml.UserTurn("hi"));
        var llama3 = ChatTemplate.FromName("llama3");
        Assert.Equal("<|begin_of_text|>", llama3.Preamble(null));
        Assert.Equal("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", llama3.UserTurn("hi"));
        Assert.Equal("User: hi\nAssistant:", ChatTemplate.FromName("plain").UserTurn("hi"));
    }

    [Fact]
    public void DefaultTemplatePrecedence()
    {
        var withChatMl = TextTokenizer.Load(Path.Combine(Fixtures.Dir(Fixture), "tokenizer.json"));
        var bare = BareTokenizer();
        Assert.Equal("plain", ChatTemplate.Choose("plain", "chatml", withChatMl).Name);   // --template first
        Assert.Equal("plain", ChatTemplate.Choose(null, "plain", withChatMl).Name);       // then the model's
        Assert.Equal("chatml", ChatTemplate.Choose(null, null, withChatMl).Name);         // then chatml tokens
        Assert.Equal("plain", ChatTemplate.Choose(null, null, bare).Name);                // else plain
        Assert.Throws<BitMoeException>(() => ChatTemplate.Choose("chatml", null, bare));  // needs <|im_start|>
        Assert.Contains("bitmoe_chat_template", Assert.Throws<BitMoeException>(() => ChatTemplate.Choose(null, "nope", bare)).Message);

        using var model = Load();
        Assert.Equal("chatml", ChatTemplate.Default(model).Name);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir(Fixture), "config.json")))!;
        config["bitmoe_chat_template"] = "plain";
        using var doc = JsonDocument.Parse(config.ToJsonString());
        Assert.Equal("plain", ModelConfig.Parse(doc.RootElement, "config.json").ChatTemplate);
    }

    /// <summary>The fixture tokenizer without &lt;|im_start|&gt; and &lt;|im_end|&gt;.</summary>
    private static TextTokenizer BareTokenizer()
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir(Fixture), "tokenizer.json")))!;
        var added = json["added_tokens"]!.AsArray();
        foreach (var t in added.Where(t => t!["content"]!.GetValue<string>().StartsWith("<|im_")).ToList()) added.Remove(t);
        using var doc = JsonDocument.Parse(json.ToJsonString());
        return TextTokenizer.FromJson(doc.RootElement, "tokenizer.json");
    }
}
