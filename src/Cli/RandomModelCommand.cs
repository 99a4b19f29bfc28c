using System.CommandLine;
using BitMoe.Engine.Conversion;
using BitMoe.Kernels;
using BitMoe.Quant;

namespace BitMoe.Cli;

/// <summary><c>bitmoe random-model</c>: a random-weight checkpoint of a given shape, for benchmarks.</summary>
public static class RandomModelCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--output", "-o") { Description = "checkpoint folder to write", Required = true };
        var preset = new Option<string?>("--preset") { Description = "shape: " + string.Join(", ", RandomModel.Presets.Keys) };
        var config = new Option<string?>("--config") { Description = "shape from a config.json file instead of a preset" };
        var dtype = new Option<string>("--dtype") { Description = "f32 | f16 | bf16", DefaultValueFactory = _ => "f16" };
        var seed = new Option<ulong>("--seed", "-s") { Description = "random seed", DefaultValueFactory = _ => 1 };
        var cmd = new Command("random-model", "Write a checkpoint folder with random weights of a given shape (quantize it for a GGUF file).")
        { output, preset, config, dtype, seed };
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            string json;
            if (r.GetValue(config) is { } path)
            {
                if (!File.Exists(path)) throw new BitMoeException($"{path}: config file not found");
                json = File.ReadAllText(path);
            }
            else if (r.GetValue(preset) is { } name)
                json = RandomModel.Presets.TryGetValue(name, out var p) ? p
                    : throw new BitMoeException($"--preset: unknown preset '{name}' (expected {string.Join(", ", RandomModel.Presets.Keys)})");
            else throw new BitMoeException("give --preset NAME or --config FILE");
            var type = r.GetValue(dtype)!.ToLowerInvariant() switch
            {
                "f32" => DType.F32, "f16" => DType.F16, "bf16" => DType.BF16,
                var other => throw new BitMoeException($"--dtype: unknown type '{other}' (expected f32, f16 or bf16)"),
            };
            ProgressBar? bar = null;
            RandomModel.Write(json, r.GetValue(output)!, type, r.GetValue(seed), (done, total, _) =>
            {
                bar ??= new ProgressBar("random-model", total);
                bar.Report(done, $"{done}/{total} tensors");
            });
            Console.WriteLine($"wrote {r.GetValue(output)}");
            return 0;
        }));
        return cmd;
    }
}
