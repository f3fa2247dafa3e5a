using Medformer.Bench;

return BenchmarkRunner.Run(args);
