using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace BitMoe.Bench;

/// <summary>A benchmark whose one call reads a known number of weight bytes (for the GB/s column).</summary>
public interface IWeightBytes
{
    /// <summary>Bytes of weights one benchmark call reads, from the parameters currently set.</summary>
    long WeightBytes { get; }
}

/// <summary>
/// GB/s of weights: bytes one call reads / mean time per call (10^9 bytes per second). Compare with the memory
/// read bandwidth <c>bitmoe bench</c> prints: a matrix that fits in cache can go faster than memory.
/// </summary>
public sealed class WeightBandwidthColumn : IColumn
{
    public string Id => nameof(WeightBandwidthColumn);
    public string ColumnName => "Weights GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "bytes of weights read per call / mean time per call, in GB/s";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats) return "-";
        // Rebuild the benchmark object with this case's parameters to ask how many bytes a call reads.
        var instance = Activator.CreateInstance(benchmarkCase.Descriptor.Type);
        if (instance is not IWeightBytes weights) return "-";
        foreach (var p in benchmarkCase.Parameters.Items)
        {
            var member = benchmarkCase.Descriptor.Type.GetField(p.Name) as System.Reflection.MemberInfo
                ?? benchmarkCase.Descriptor.Type.GetProperty(p.Name);
            switch (member)
            {
                case System.Reflection.FieldInfo f: f.SetValue(instance, p.Value); break;
                case System.Reflection.PropertyInfo pr: pr.SetValue(instance, p.Value); break;
            }
        }
        return (weights.WeightBytes / stats.Mean).ToString("F2"); // bytes per ns = GB/s
    }

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public override string ToString() => ColumnName;
}
