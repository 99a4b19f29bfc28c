using System.CommandLine;
using BitMoe.Engine.Sampling;
using BitMoe.Quant;

namespace BitMoe.Cli;

/// <summary>The sampling options shared by generate and chat (llama.cpp's names and defaults).</summary>
public sealed class SamplingOptions
{
    private readonly Option<float> _temp = new("--temp") { Description = "temperature; 0 is greedy", DefaultValueFactory = _ => 0.8f };
    private readonly Option<int> _topK = new("--top-k") { Description = "keep the k most likely tokens (0: all)", DefaultValueFactory = _ => 40 };
    private readonly Option<float> _topP = new("--top-p") { Description = "nucleus sampling threshold (1: off)", DefaultValueFactory = _ => 0.95f };
    private readonly Option<float> _minP = new("--min-p") { Description = "drop tokens below min-p times the top probability (0: off)", DefaultValueFactory = _ => 0.05f };
    private readonly Option<float> _repeat = new("--repeat-penalty") { Description = "penalty for tokens among the last 64 (1: off)", DefaultValueFactory = _ => 1.0f };
    private readonly Option<ulong?> _seed = new("--seed", "-s") { Description = "random seed (default: time)" };

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { _temp, _topK, _topP, _minP, _repeat, _seed }) command.Options.Add(o);
    }

    /// <summary>The parsed values, checked.</summary>
    public SamplingParams Read(ParseResult r)
    {
        var s = new SamplingParams
        {
            Temperature = r.GetValue(_temp), TopK = r.GetValue(_topK), TopP = r.GetValue(_topP), MinP = r.GetValue(_minP),
            RepeatPenalty = r.GetValue(_repeat), Seed = r.GetValue(_seed) ?? (ulong)Environment.TickCount64,
        };
        Validate(s);
        return s;
    }

    public static void Validate(SamplingParams s)
    {
        if (s.TopP is <= 0f or > 1f) throw new BitMoeException($"--top-p: {s.TopP} must be in (0, 1]");
        if (s.MinP is < 0f or > 1f) throw new BitMoeException($"--min-p: {s.MinP} must be in [0, 1]");
        if (s.RepeatPenalty <= 0f) throw new BitMoeException($"--repeat-penalty: {s.RepeatPenalty} must be positive");
        if (float.IsNaN(s.Temperature)) throw new BitMoeException("--temp: not a number");
    }
}
