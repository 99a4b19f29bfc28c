namespace BitMoe.Engine.Sampling;

/// <summary>llama.cpp's sampling options and defaults. Temperature 0 (or below) is greedy.</summary>
public sealed record SamplingParams
{
    public float Temperature { get; init; } = 0.8f;
    /// <summary>0 or below keeps every token.</summary>
    public int TopK { get; init; } = 40;
    /// <summary>1 keeps every token.</summary>
    public float TopP { get; init; } = 0.95f;
    /// <summary>0 keeps every token.</summary>
    public float MinP { get; init; } = 0.05f;
    /// <summary>1 is off.</summary>
    public float RepeatPenalty { get; init; } = 1.0f;
    /// <summary>How many of the last tokens the repeat penalty looks at.</summary>
    public int RepeatLastN { get; init; } = 64;
    public ulong Seed { get; init; } = (ulong)Environment.TickCount64;
}
