using System.Globalization;
using Medformer.Datasets.Layouts;
using Medformer.Runtime;

namespace Medformer.Datasets.Corpora;

/// <summary>What kind of data a <see cref="DataSource"/> names.</summary>
public enum DataKind { Phantom, MedMnist, Mnist, Msd, PetCt }

/// <summary>
/// One data source as users name it, parsed in one place and opened the same way by <c>pretrain</c> (the run
/// config's corpora), <c>finetune --task</c> and <c>evaluate --task</c>: <c>phantom[:2d|:3d]</c>,
/// <c>medmnist:NAME</c> (or a bare subset name, or an .npz file in MedMNIST's layout), <c>mnist:FOLDER</c>,
/// <c>msd:FOLDER</c>, <c>petct:FOLDER[:IN:OUT]</c>. Phantom, MedMNIST and MNIST have splits of their own (MNIST
/// no validation); an MSD task's labelled cases and a folder of PET studies are split by <see cref="HoldOut"/>.
/// </summary>
/// <param name="Source">"2d"/"3d" for the phantom, otherwise the file, folder or MedMNIST subset name.</param>
/// <param name="Size">Image side for the phantom and MedMNIST (28, 64, 128, 224); null: 28.</param>
public sealed record DataSource(DataKind Kind, string Source, int? Size = null, int InputSeconds = 60, int TargetSeconds = 90)
{
    public const string Grammar = "phantom[:2d|:3d], a MedMNIST subset name or .npz file (medmnist:NAME), mnist:FOLDER, msd:FOLDER (a Decathlon task) "
        + "or petct:FOLDER[:IN:OUT] (studies with pet_INs and pet_OUTs, default 60 and 90)";

    /// <summary>Parses <paramref name="text"/>; errors name <paramref name="argument"/> and say what it takes.</summary>
    public static DataSource Parse(string text, int? size = null, string argument = "--task")
    {
        var parts = text.Split(':');
        int Seconds(string value) => int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int seconds) && seconds > 0
            ? seconds
            : throw new ArgumentException($"{argument} '{text}': '{value}' is not an exposure in whole seconds (petct:FOLDER:60:90)");
        return parts[0] switch
        {
            "phantom" when parts.Length == 1 || parts is [_, "2d" or "3d"] => new(DataKind.Phantom, parts.Length == 1 ? "2d" : parts[1], size),
            "phantom" => throw new ArgumentException($"{argument} '{text}': the phantom is phantom:2d or phantom:3d"),
            "medmnist" or "npz" when parts.Length == 2 => new(DataKind.MedMnist, parts[1], size),
            "mnist" when parts.Length == 2 => new(DataKind.Mnist, parts[1]),
            "msd" when parts.Length == 2 => new(DataKind.Msd, parts[1]),
            "petct" when parts.Length == 2 => new(DataKind.PetCt, parts[1]),
            "petct" when parts.Length == 4 => new(DataKind.PetCt, parts[1], null, Seconds(parts[2]), Seconds(parts[3])),
            _ when parts.Length == 1 && (text.EndsWith(".npz", StringComparison.OrdinalIgnoreCase) || MedMnistRegistry.Default.TryGet(text, out _))
                => new(DataKind.MedMnist, text, size),
            _ => throw new ArgumentException($"{argument} '{text}': expected {Grammar}"),
        };
    }

    /// <summary>The phantom's generation settings (phantom sources only).</summary>
    public PhantomSpec PhantomSpec() => Kind == DataKind.Phantom ? Corpora.PhantomSpec.Default(Source,
        Size ?? 28) : throw new InvalidOperationException($"{this} is not the phantom");

    /// <summary>
    /// The .npz file of a MedMNIST source: the file itself, or a subset name's download in $MEDFORMER_HOME/medmnist
    /// (an <see cref="ArgumentException"/> with the download command when it is not there).
    /// </summary>
    public string MedMnistFile(string where = "corpora")
    {
        if (File.Exists(Source) || !MedMnistRegistry.Default.TryGet(Source, out var subset)) return Source;
        int size = Size ?? 28;
        string path = Path.Combine(MedformerHome.Path, "medmnist", subset.FileName(size));
        if (!File.Exists(path))
            throw new ArgumentException($"{where}: {Source} ({size}) is not downloaded; run: medformer download medmnist " +
                $"{subset.Name}{(size == 28 ? "" : $" --size {size}")}");
        return path;
    }

    /// <summary>
    /// One split: train, val or test for the phantom and MedMNIST, train or test for MNIST; an MSD task's labelled
    /// cases (imagesTs for test); a PET folder's studies whatever the split.
    /// </summary>
    public ICorpus Open(string split = "train", string where = "corpora") => Kind switch
    {
        DataKind.Phantom => Corpora.Phantom.Open(PhantomSpec(), split),
        DataKind.MedMnist => MedMnistCorpus.Open(MedMnistFile(where), split),
        DataKind.Mnist => MnistCorpus.Open(Source, split),
        DataKind.Msd => new MsdCorpus(Source, split == "test" ? "test" : "training"),
        DataKind.PetCt => new PetCtCorpus(Source, InputSeconds, TargetSeconds),
        _ => throw new InvalidOperationException($"unknown data kind {Kind}"),
    };

    /// <summary>Training, validation (none for MNIST) and test corpora, as fine-tuning and evaluation use them.</summary>
    public DataSplits OpenSplits(string where = "--task")
    {
        var opened = new List<IDisposable>();
        T Keep<T>(T corpus)
        {
            if (corpus is IDisposable disposable) opened.Add(disposable);
            return corpus;
        }
        try
        {
            switch (Kind)
            {
                case DataKind.Msd or DataKind.PetCt:
                    var whole = Keep(Open("train", where));
                    var held = HoldOut.Split(whole);
                    return new DataSplits(held.Train, held.Validation, held.Test, whole, opened);
                case DataKind.Mnist:
                    var train = Keep(Open("train", where));
                    return new DataSplits(train, null, Keep(Open("test", where)), train, opened);
                default:
                    var first = Keep(Open("train", where));
                    return new DataSplits(first, Keep(Open("val", where)), Keep(Open("test", where)), first, opened);
            }
        }
        catch
        {
            foreach (var corpus in opened) corpus.Dispose();
            throw;
        }
    }

    public override string ToString() => Kind switch
    {
        DataKind.Phantom => $"phantom:{Source}",
        DataKind.PetCt when (InputSeconds, TargetSeconds) != (60, 90) => $"petct:{Source}:{InputSeconds}:{TargetSeconds}",
        _ => $"{Kind.ToString().ToLowerInvariant()}:{Source}",
    };
}

/// <summary>
/// The opened splits of a <see cref="DataSource"/>; <see cref="Source"/> is the corpus they come from (the whole
/// held-out corpus, or the training split where the data has splits of its own). Disposes what it opened.
/// </summary>
public sealed record DataSplits(ICorpus Train, ICorpus? Validation, ICorpus Test, ICorpus Source, IReadOnlyList<IDisposable> Opened) : IDisposable
{
    public void Dispose()
    {
        foreach (var corpus in Opened) corpus.Dispose();
    }
}
