using System.Globalization;
using System.Text.RegularExpressions;
using Medformer.Datasets.Layouts;
using Medformer.Runtime;

namespace Medformer.Datasets.Corpora;

/// <summary>What kind of data a <see cref="DataSource"/> names.</summary>
public enum DataKind { Phantom, MedMnist, Mnist, Msd, PetCt }

/// <summary>
/// One data source as users name it, parsed in one place and opened the same way by <c>pretrain</c> (a run config's
/// <c>data:</c> key), <c>finetune --task</c> and <c>evaluate --task</c>: <c>KIND:ARGUMENT[,key=value…]</c>.
/// <list type="bullet">
/// <item><c>phantom:2d</c>, <c>phantom:3d</c> (the embedded corpus; <c>,size=N</c>)</item>
/// <item><c>medmnist:NAME</c> (a downloaded subset; <c>,size=64</c>)</item>
/// <item><c>npz:FILE</c> (a file in MedMNIST's layout; <c>,subset=NAME</c> names its subset where the file name does not)</item>
/// <item><c>mnist:FOLDER</c>, <c>msd:FOLDER</c> (a Decathlon task), <c>petct:FOLDER</c> (<c>,in=60,out=90</c>: the exposures)</item>
/// </list>
/// Shorthands: <c>phantom</c> (phantom:2d), a bare subset name, a bare <c>.npz</c> path, and <c>petct:FOLDER:IN:OUT</c>.
/// Phantom, MedMNIST and MNIST have splits of their own (MNIST no validation); an MSD task's labelled cases and a
/// folder of PET studies are split by <see cref="HoldOut"/>.
/// </summary>
/// <param name="Source">"2d"/"3d" for the phantom, otherwise the file, folder or MedMNIST subset name.</param>
/// <param name="Size">Image side for the phantom and MedMNIST (28, 64, 128, 224); null: 28.</param>
/// <param name="Subset">The MedMNIST subset an .npz holds (its labels, classes, organ, modality); null: its file name says.</param>
public sealed partial record DataSource(DataKind Kind, string Source, int? Size = null, int InputSeconds = 60, int TargetSeconds = 90, string? Subset = null)
{
    /// <summary>The kinds, as the grammar spells them.</summary>
    public static IReadOnlyList<string> Kinds { get; } = ["phantom", "medmnist", "npz", "mnist", "msd", "petct"];

    public const string Grammar = "KIND:ARGUMENT[,key=value]: phantom:2d|3d, medmnist:NAME[,size=64], npz:FILE[,subset=NAME], mnist:FOLDER, "
        + "msd:FOLDER or petct:FOLDER[,in=60,out=90] (docs/data.md)";

    /// <summary>The settings each kind takes after its argument.</summary>
    static readonly Dictionary<string, string[]> SettingsOf = new()
    {
        ["phantom"] = ["size"], ["medmnist"] = ["size", "subset"], ["npz"] = ["subset"], ["mnist"] = [], ["msd"] = [], ["petct"] = ["in", "out"],
    };

    /// <summary>
    /// Parses <paramref name="text"/>; errors are one line naming <paramref name="argument"/> and listing the kinds.
    /// <paramref name="size"/> (finetune's --size) is the image size unless the text sets one.
    /// </summary>
    public static DataSource Parse(string text, int? size = null, string argument = "--task")
    {
        var errors = new ParseErrors(text, argument);
        if (string.IsNullOrWhiteSpace(text)) throw errors.Bad("empty");
        if (!text.Contains(':')) return ParseShorthand(text, size, errors);
        int colon = text.IndexOf(':');
        string kind = text[..colon], rest = text[(colon + 1)..];
        if (!SettingsOf.TryGetValue(kind, out var allowed)) throw errors.Bad($"unknown kind '{kind}' (the kinds are {string.Join(", ", Kinds)})");
        var (source, settings) = SplitSettings(rest, kind, allowed, errors);
        if (source.Length == 0) throw errors.Bad($"{kind} needs its argument");
        int? given = settings.ContainsKey("size") ? errors.Whole(settings, "size", "the image size is a positive whole number") : null;
        if (given is { } g && size is { } s && g != s) throw errors.Bad($"size={g} and --size {s} disagree");
        size = given ?? size;
        string? subset = settings.GetValueOrDefault("subset");
        if (subset is not null && !MedMnistRegistry.Default.TryGet(subset, out _))
            throw errors.Bad($"subset={subset} is not a MedMNIST subset ({string.Join(", ", MedMnistRegistry.Default.Names)})");
        switch (kind)
        {
            case "phantom":
                return source is "2d" or "3d" ? new(DataKind.Phantom, source, size) : throw errors.Bad("the phantom is phantom:2d or phantom:3d");
            case "medmnist" or "npz":
                if (kind == "npz" && !source.EndsWith(".npz", StringComparison.OrdinalIgnoreCase)) throw errors.Bad($"npz takes a .npz file, not '{source}'");
                return new(DataKind.MedMnist, source, size, Subset: subset);
            case "mnist":
                return new(DataKind.Mnist, source);
            case "msd":
                return new(DataKind.Msd, source);
            default:
                return ParsePetCt(source, settings, errors);
        }
    }

    /// <summary>Names the text and the argument it came from, and lists the grammar, in every error of <see cref="Parse"/>.</summary>
    sealed record ParseErrors(string Text, string Argument)
    {
        public ArgumentException Bad(string what) => new($"{Argument} '{Text}': {what}; expected {Grammar}");

        /// <summary>The setting <paramref name="key"/> as a positive whole number.</summary>
        public int Whole(Dictionary<string, string> settings, string key, string what)
        {
            string value = settings[key];
            return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : throw Bad($"{key}={value}: {what}");
        }
    }

    // Shorthands: a bare subset name or .npz path, and the phantom alone.
    static DataSource ParseShorthand(string text, int? size, ParseErrors errors)
    {
        if (text == "phantom") return new(DataKind.Phantom, "2d", size);
        if (MedMnistRegistry.Default.TryGet(text, out _)) return new(DataKind.MedMnist, text, size);
        if (text.EndsWith(".npz", StringComparison.OrdinalIgnoreCase) && !text.Contains(',')) return new(DataKind.MedMnist, text, size);
        if (Kinds.Contains(text)) throw errors.Bad($"{text} needs its argument ({text}:…)");
        throw errors.Bad($"'{text}' is no kind of data nor a MedMNIST subset (the kinds are {string.Join(", ", Kinds)})");
    }

    /// <summary>The argument and the settings of what follows KIND:, each setting one the kind takes, and given once.</summary>
    static (string Source, Dictionary<string, string> Settings) SplitSettings(string rest, string kind, string[] allowed, ParseErrors errors)
    {
        // Settings are the trailing ",key=value" parts; a comma elsewhere stays in the path.
        var settings = new Dictionary<string, string>(StringComparer.Ordinal);
        var parts = rest.Split(',');
        int kept = parts.Length;
        while (kept > 1 && SettingPattern().IsMatch(parts[kept - 1])) kept--;
        foreach (string part in parts[kept..])
        {
            var (key, value) = (part[..part.IndexOf('=')], part[(part.IndexOf('=') + 1)..]);
            if (!allowed.Contains(key))
                throw errors.Bad(allowed.Length == 0 ? $"{kind} takes no settings (not '{key}')"
                    : $"{kind} has no setting '{key}' (it has {string.Join(", ", allowed)})");
            if (!settings.TryAdd(key, value)) throw errors.Bad($"'{key}' is given twice");
        }
        return (string.Join(',', parts[..kept]), settings);
    }

    static DataSource ParsePetCt(string source, Dictionary<string, string> settings, ParseErrors errors)
    {
        // petct:FOLDER:IN:OUT, the older spelling of the exposures, still reads.
        var old = source.Split(':');
        if (old.Length == 3 && settings.Count == 0)
        {
            settings["in"] = old[1];
            settings["out"] = old[2];
            source = old[0];
        }
        else if (old.Length != 1) throw errors.Bad("petct takes a folder and in=SECONDS,out=SECONDS");
        int inSeconds = settings.TryGetValue("in", out string? exposure)
            ? errors.Whole(settings, "in", $"'{exposure}' is not an exposure in whole seconds") : 60;
        int outSeconds = settings.TryGetValue("out", out exposure)
            ? errors.Whole(settings, "out", $"'{exposure}' is not an exposure in whole seconds") : 90;
        return new(DataKind.PetCt, source, null, inSeconds, outSeconds);
    }

    [GeneratedRegex("^[a-z_]+=[^=,]*$")]
    private static partial Regex SettingPattern();

    /// <summary>
    /// Checks that the file or folder it names is there (a subset name: that it is downloaded), without opening it:
    /// an <see cref="ArgumentException"/> naming <paramref name="where"/>, so a command refuses before writing anything.
    /// </summary>
    public void Check(string where = "--task")
    {
        switch (Kind)
        {
            case DataKind.MedMnist:
                string file = MedMnistFile(where);
                if (!File.Exists(file)) throw new ArgumentException($"{where} '{this}': {file}: no such file (an .npz in MedMNIST's layout)");
                break;
            case DataKind.Mnist when !Directory.Exists(Source) && !File.Exists(Source):
                throw new ArgumentException($"{where} '{this}': {Source}: no such folder");
            case DataKind.Msd or DataKind.PetCt when !Directory.Exists(Source):
                throw new ArgumentException($"{where} '{this}': {Source}: no such folder");
        }
    }

    /// <summary>The MedMNIST subset of a MedMNIST source: <see cref="Subset"/>, or the subset its name is; null: the file's name decides.</summary>
    public MedMnistSubset? SubsetInfo() =>
        Kind != DataKind.MedMnist ? null
        : MedMnistRegistry.Default.TryGet(Subset ?? Source, out var subset) ? subset
        : null;

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
        DataKind.MedMnist => MedMnistCorpus.Open(MedMnistFile(where), split, SubsetInfo()),
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

    /// <summary>The source in the grammar: what <see cref="Parse"/> reads back as this source.</summary>
    public override string ToString() => Kind switch
    {
        DataKind.Phantom => $"phantom:{Source}{(Size is { } n ? $",size={n}" : "")}",
        DataKind.MedMnist when Source.EndsWith(".npz", StringComparison.OrdinalIgnoreCase) => $"npz:{Source}{(Subset is null ? "" : $",subset={Subset}")}",
        DataKind.MedMnist => $"medmnist:{Source}{(Size is { } n ? $",size={n}" : "")}{(Subset is null ? "" : $",subset={Subset}")}",
        DataKind.PetCt when (InputSeconds, TargetSeconds) != (60, 90) => $"petct:{Source},in={InputSeconds},out={TargetSeconds}",
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
