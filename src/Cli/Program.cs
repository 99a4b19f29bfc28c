using System.CommandLine;
using BitMoe.Cli;

var root = new RootCommand("BitMoe: run ternary (BitNet b1.58) Multi-Head Mixture-of-Experts language models on a CPU.");
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(PerplexityCommand.Create());
root.Subcommands.Add(ChatCommand.Create());
root.Subcommands.Add(QuantizeCommand.Create());
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(RandomModelCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
return root.Parse(args).Invoke();
