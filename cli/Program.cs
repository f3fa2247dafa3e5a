using System.CommandLine;
using Medformer.Cli;

return MedformerCommand.Run(args);
