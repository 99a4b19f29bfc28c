using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using BitMoe.Bench;

// Examples (from the repository root):
//   dotnet run -c Release --project bench/BitMoe.Bench -- --list flat
//   dotnet run -c Release --project bench/BitMoe.Bench -- --filter '*TernaryGemv*' --job short
//   dotnet run -c Release --project bench/BitMoe.Bench -- --filter '*FloatGemv*' --job short
// The "Weights GB/s" column is bytes of weights one call reads / mean time (compare with `bitmoe bench`'s memory bandwidth).
var config = DefaultConfig.Instance.AddColumn(new WeightBandwidthColumn())
    .WithSummaryStyle(BenchmarkDotNet.Reports.SummaryStyle.Default.WithMaxParameterColumnWidth(32));
BenchmarkSwitcher.FromAssembly(typeof(WeightBandwidthColumn).Assembly).Run(args, config);
