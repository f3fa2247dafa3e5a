using Medformer.Datasets.Transforms;
using Medformer.Heads.FineTuning;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// The settings of <c>bench/run pays</c>, read from its MEDFORMER_PAYS_* variables (<see cref="PaysExperiment"/> lists
/// them) and checked before anything trains; <see cref="Output"/> exists once they are read.
/// </summary>
internal sealed record PaysSettings(int Seeds, int FirstSeed, double[] Fractions, long Steps, double LearningRate, double Smoothing, Strategy Strategy,
    string[] Methods, bool Probe, string[]? SelfTrain, long SelfTrainSteps, SelfTrainingOptions SelfTraining, string[]? FixMatchSpec,
    FixMatchOptions FixMatch, string FixMatchStart, double FixMatchEma, string? ModelDir, string? ConfigPath, string Output)
{
    /// <summary>The Medformer methods among <see cref="Methods"/>, in their order: random and pretrained.</summary>
    public string[] Inits { get; } = [.. Methods.Where(x => x is "random" or "pretrained")];

    /// <summary>FixMatch's steps, the first field of MEDFORMER_PAYS_FIXMATCH (read where a FixMatch row trains).</summary>
    public long FixMatchSteps => long.Parse(FixMatchSpec![0]);

    static string? Env(string key) => Environment.GetEnvironmentVariable($"MEDFORMER_PAYS_{key}");

    /// <summary>Reads the variables in the order they are documented; a wrong one throws before the others are read.</summary>
    public static PaysSettings FromEnvironment(long[] spatial)
    {
        int seeds = int.Parse(Env("SEEDS") ?? "3");
        int firstSeed = int.Parse(Env("FIRST_SEED") ?? "0");
        double[] fractions = [.. (Env("FRACTIONS") is { Length: > 0 } list ? list : Env("FRACTION") ?? "0.01,0.1").Split(',').Select(double.Parse)];
        if (fractions.Any(f => f is <= 0 or > 1)) throw new ArgumentException("MEDFORMER_PAYS_FRACTIONS: label fractions in (0, 1], comma-separated");
        long steps = long.Parse(Env("STEPS") ?? "1000");
        double lr = double.Parse(Env("LR") ?? "1e-3");
        double smoothing = double.Parse(Env("SMOOTHING") ?? "0");
        var strategy = Strategy.Parse(Env("STRATEGY") ?? "full");
        // Methods: linear (a linear model on pixels), cnn (SmallCnn from scratch), random and pretrained (Medformer).
        var methods = (Env("METHODS") is { Length: > 0 } m ? m : "linear,cnn," + (Env("INITS") ?? "random,pretrained")).Split(',');
        if (methods.Length == 0 || methods.Any(x => x is not ("linear" or "cnn" or "random" or "pretrained")))
            throw new ArgumentException("MEDFORMER_PAYS_METHODS: a comma-separated list of linear, cnn, random and pretrained");
        bool probe = (Env("PROBE") ?? "1") != "0";
        var selfTrain = Env("SELF_TRAIN") is { Length: > 0 } spec ? spec.Split(':') : null;
        long selfTrainSteps = selfTrain is null ? 0 : long.Parse(selfTrain[0]);
        var selfTraining = SelfTrainingFrom(selfTrain, spatial);
        // FixMatch: STEPS[:THRESHOLD[:RATIO[:WEIGHT[:START]]]], START "tuned" (from the fine-tuned model) or "pretrained".
        var fixMatchSpec = Env("FIXMATCH") is { Length: > 0 } fm ? fm.Split(':') : null;
        var fixMatch = FixMatchFrom(fixMatchSpec);
        string fixMatchStart = fixMatchSpec is { Length: > 4 } ? fixMatchSpec[4] : "tuned";
        if (fixMatchStart is not ("tuned" or "pretrained"))
            throw new ArgumentException($"MEDFORMER_PAYS_FIXMATCH: the fifth field is tuned or pretrained, not '{fixMatchStart}'");
        double fixMatchEma = double.Parse(Env("EMA") ?? "0");
        string? modelDir = Env("MODEL");
        string? configPath = Env("CONFIG");
        string output = Env("OUT") is { Length: > 0 } o ? o : Directory.CreateTempSubdirectory("medformer-pays-").FullName;
        Directory.CreateDirectory(output);
        return new PaysSettings(seeds, firstSeed, fractions, steps, lr, smoothing, strategy, methods, probe, selfTrain, selfTrainSteps, selfTraining,
            fixMatchSpec, fixMatch, fixMatchStart, fixMatchEma, modelDir, configPath, output);
    }

    /// <summary>MEDFORMER_PAYS_SELF_TRAIN's fields after STEPS: THRESHOLD, SHARE, STUDENT (read where the student is made), AUGMENT, ROUNDS.</summary>
    static SelfTrainingOptions SelfTrainingFrom(string[]? fields, long[] spatial) => new()
    {
        Threshold = fields is { Length: > 1 } ? double.Parse(fields[1]) : 0,
        UnlabelledShare = fields is { Length: > 2 } ? double.Parse(fields[2]) : 0.5,
        // A fifth field "strong": the student's noise is stronger than fine-tuning's crops and flips (Noisy Student).
        Augment = fields is { Length: > 4 } && fields[4] == "strong" ? StrongAugment(spatial) : null,
        Rounds = fields is { Length: > 5 } ? int.Parse(fields[5]) : 1,
    };

    /// <summary>MEDFORMER_PAYS_FIXMATCH's fields after STEPS: THRESHOLD, RATIO, WEIGHT.</summary>
    static FixMatchOptions FixMatchFrom(string[]? fields) => new()
    {
        Threshold = fields is { Length: > 1 } ? double.Parse(fields[1]) : 0.95,
        UnlabelledRatio = fields is { Length: > 2 } ? double.Parse(fields[2]) : 7,
        Weight = fields is { Length: > 3 } ? double.Parse(fields[3]) : 1,
    };

    /// <summary>Noisy Student's kind of noise for 28×28 grey images: wider crops, small affine warps, contrast and noise.</summary>
    static ITransform StrongAugment(long[] spatial) => new Compose([
        new RandResizedCrop(spatial, MinScale: 0.5), new RandFlip(0.5, [1]),
        new RandAffine(0.5, RotateRange: [0.25], ScaleRange: [0.15], TranslateRange: [.. spatial.Select(s => s / 9.0)],
            PaddingMode: GridSamplePaddingMode.Zeros),
        new RandAdjustContrast(0.3, 0.7, 1.5), new RandGaussianNoise(0.3, Std: 0.05),
    ]);
}
