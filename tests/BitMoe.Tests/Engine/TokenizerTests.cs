using System.Text.Json;
using BitMoe.Engine.Tokenization;

namespace BitMoe.Tests.Engine;

public class TokenizerTests
{
    private static readonly string Dir = Fixtures.Dir("tokenizer");

    /// <summary>The engine's encoder (Microsoft.ML.Tokenizers) gives the ids the training-side Python encoder gave.</summary>
    [Fact]
    public void EncodesLikeTheTrainingTokenizer()
    {
        var tok = TextTokenizer.Load(Path.Combine(Dir, "tokenizer.json"));
        string text = File.ReadAllText(Path.Combine(Dir, "sample.txt"));
        var expected = JsonSerializer.Deserialize<int[]>(File.ReadAllText(Path.Combine(Dir, "expected_ids.json")))!;
        var ids = tok.Encode(text);
        Assert.Equal(expected, ids);
    }

    [Fact]
    public void DecodeInvertsEncode()
    {
        var tok = TextTokenizer.Load(Path.Combine(Dir, "tokenizer.json"));
        string text = File.ReadAllText(Path.Combine(Dir, "sample.txt"));
        Assert.Equal(text, tok.Decode(tok.Encode(text)));
    }

    [Fact]
    public void SpecialTokensAreMatchedLiterallyAndNoBosIsAdded()
    {
        var tok = TextTokenizer.Load(Path.Combine(Dir, "tokenizer.json"));
        Assert.Null(tok.BosId);
        var ids = tok.Encode("<|im_start|>user\nhi<|im_end|>");
        Assert.Equal(tok.TokenId("<|im_start|>"), ids[0]);
        Assert.Equal(tok.TokenId("<|im_end|>"), ids[^1]);
    }

    /// <summary>A character split over several tokens is held back until it is whole.</summary>
    [Fact]
    public void StreamingNeverEmitsHalfACharacter()
    {
        var tok = TextTokenizer.Load(Path.Combine(Dir, "tokenizer.json"));
        const string text = "東京 🙂 café";
        var stream = new TokenTextStream(tok);
        var pieces = tok.Encode(text).Select(stream.Push).ToList();
        pieces.Add(stream.Flush());
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Equal(text, string.Concat(pieces));
    }

    [Fact]
    public void TemplateProcessingAsksForABos()
    {
        var root = JsonNodeFromFile(Path.Combine(Dir, "tokenizer.json"));
        root["post_processor"] = System.Text.Json.Nodes.JsonNode.Parse(
            """{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|endoftext|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{}}""");
        using var doc = JsonDocument.Parse(root.ToJsonString());
        var tok = TextTokenizer.FromJson(doc.RootElement, "test");
        Assert.Equal(tok.TokenId("<|endoftext|>"), tok.BosId);
        Assert.Equal(tok.BosId, tok.Encode("hello")[0]);
    }

    private static System.Text.Json.Nodes.JsonObject JsonNodeFromFile(string path) =>
        System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!.AsObject();
}
