using System.CommandLine;
using BitMoe.Engine.Conversion;

namespace BitMoe.Cli;

/// <summary><c>bitmoe quantize</c>: a checkpoint folder to one packed ternary GGUF file.</summary>
public static class QuantizeCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "checkpoint folder (config.json, model.safetensors, tokenizer.json)" };
        var output = new Option<string>("--output", "-o") { Description = "output .gguf file", Required = true };
        var type = new Option<string>("--type") { Description = "tq2_0 (2 bits/weight) | tq1_0 (1.69 bits/weight) | f16", DefaultValueFactory = _ => "tq2_0" };
        var arch = new Option<string>("--arch") { Description = "auto | mhmoe | llama (auto: llama when llama.cpp can run the model)", DefaultValueFactory = _ => "auto" };
        var cmd = new Command("quantize", "Write a checkpoint as one GGUF file with ternary weights packed in tq2_0 or tq1_0.") { input, output, type, arch };
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            var options = new QuantizeOptions(Quantizer.ParseType(r.GetValue(type)!), r.GetValue(arch)!);
            ProgressBar? bar = null;
            var summary = Quantizer.Run(r.GetValue(input)!, r.GetValue(output)!, options, (done, total, name) =>
            {
                bar ??= new ProgressBar("quantize", total);
                bar.Report(done, $"{done}/{total} tensors");
            });
            Console.WriteLine($"wrote {r.GetValue(output)} (architecture {summary.Architecture}, type {Quantizer.TypeName(options.Type)})");
            Console.WriteLine($"  tensors: {summary.Tensors}, parameters: {summary.Parameters:N0}");
            Console.WriteLine($"  file size: {summary.FileBytes:N0} bytes ({summary.FileBytes / 1048576.0:F2} MiB)");
            if (summary.TernaryWeights > 0)
                Console.WriteLine($"  ternary weights: {summary.TernaryWeights:N0} in {summary.TernaryBytes:N0} bytes = {summary.BitsPerTernaryWeight:F4} bits/weight (block scales included)");
            Console.WriteLine($"  time: {summary.Seconds:F2} s");
            return 0;
        }));
        return cmd;
    }
}
