using System.Text.Json;
using System.Text.Json.Serialization;

namespace Medformer;

/// <summary>
/// The model's hyper-parameters as plain data (config.json in a checkpoint), Hugging Face style. The latent-bank
/// vocabularies are data too: adding an organ is a line of JSON, not code.
/// </summary>
public sealed record MedformerConfig
{
    /// <summary>Latent and token width d.</summary>
    public int Dim { get; init; } = 256;
    /// <summary>Latents in each bank; a sample's latent array has (general + 4 banks) of these.</summary>
    public int LatentsPerBank { get; init; } = 8;
    /// <summary>Shared latents every sample gets, whatever its meta.</summary>
    public int GeneralLatents { get; init; } = 16;
    public int PatchSize2d { get; init; } = 4;
    public int PatchSize3d { get; init; } = 4;
    /// <summary>
    /// How the tokenizer reads pixels: "patch" (one strided convolution, a linear patch embedding; the default) or
    /// "conv" (two 3×3 convolutions with ReLU at full resolution, then the strided patch convolution: a small
    /// convolutional stem, as Perceiver IO offers besides patches). Both give the same token grid. A config.json
    /// without the key is "patch".
    /// </summary>
    public string Stem { get; init; } = "patch";
    /// <summary>Channels of the conv stem's 3×3 convolutions (only with <see cref="Stem"/> "conv").</summary>
    public int StemChannels { get; init; } = 32;
    /// <summary>Input channels the patch embedding takes; a 1-channel image is replicated to fill them.</summary>
    public int InChannels { get; init; } = 3;
    /// <summary>Fourier frequency bands per spatial axis (Perceiver's num_bands), up to the grid's Nyquist frequency.</summary>
    public int FourierBands { get; init; } = 16;
    public int CrossAttentionHeads { get; init; } = 1;
    public int SelfAttentionHeads { get; init; } = 8;
    /// <summary>Distinct latent self-attention blocks.</summary>
    public int Depth { get; init; } = 6;
    /// <summary>How often the block stack is applied; above 1 the weights are shared across repeats (Perceiver).</summary>
    public int Repeats { get; init; } = 1;
    /// <summary>MLP hidden width over <see cref="Dim"/>.</summary>
    public int Widening { get; init; } = 4;
    public int DecoderHeads { get; init; } = 8;
    public double Dropout { get; init; }
    /// <summary>Stochastic-depth rate of the last self-attention block (linearly rising from 0).</summary>
    public double DropPath { get; init; }
    /// <summary>Queries decoded at once for dense outputs, so a 3D volume fits in memory.</summary>
    public int QueryChunk { get; init; } = 16384;

    public IReadOnlyList<string> Organs { get; init; } =
        ["brain", "chest", "breast", "abdomen", "colon", "skin", "retina", "blood", "kidney", "knee", "bone", "lung", "heart", "vessel", "other"];
    public IReadOnlyList<string> Modalities { get; init; } =
        ["ct", "mri", "pet", "xray", "ultrasound", "oct", "fundus", "dermatoscopy", "pathology", "microscopy", "other"];
    public IReadOnlyList<string> Dimensionalities { get; init; } = ["2d", "3d"];
    public IReadOnlyList<string> Tasks { get; init; } =
        ["inpainting", "rotation", "jigsaw", "simclr", "pixpro", "byol", "barlow", "classification", "segmentation", "image_to_image", "other"];

    /// <summary>Latents per sample: the general ones plus one bank of each kind.</summary>
    [JsonIgnore]
    public int LatentCount => GeneralLatents + 4 * LatentsPerBank;

    /// <summary>
    /// A lower bound of the parameters: the self-attention blocks (4 d² of attention, 2 widening d² of MLP each)
    /// dominate; the decoder and banks come on top.
    /// </summary>
    [JsonIgnore]
    public double BlockParameters => (double)Depth * (4 + 2 * Widening) * Dim * Dim;

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static MedformerConfig FromJson(string json, string source = "config")
    {
        MedformerConfig config;
        try
        {
            config = JsonSerializer.Deserialize<MedformerConfig>(json, Json)
                ?? throw new InvalidDataException($"{source}: the config is null");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not a Medformer config: {e.Message}", e);
        }
        config.Validate(source);
        return config;
    }

    public static MedformerConfig Load(string path) => FromJson(File.ReadAllText(path), path);

    /// <summary>A preset (tiny, small, base, large) or a JSON file.</summary>
    public static MedformerConfig Resolve(string presetOrFile) => presetOrFile switch
    {
        "tiny" => Tiny,
        "small" => Small,
        "base" => Base,
        "large" => Large,
        _ when File.Exists(presetOrFile) => Load(presetOrFile),
        _ => throw new ArgumentException($"--config '{presetOrFile}': neither a preset (tiny, small, base, large) nor a file."),
    };

    /// <summary>For tests on a CPU: seconds per hundred steps.</summary>
    public static MedformerConfig Tiny { get; } = new()
    {
        Dim = 64, LatentsPerBank = 4, GeneralLatents = 8, FourierBands = 6, SelfAttentionHeads = 4, DecoderHeads = 4, Depth = 2,
    };

    public static MedformerConfig Small { get; } = new() { Dim = 256, Depth = 6, SelfAttentionHeads = 8 };

    public static MedformerConfig Base { get; } = new()
    {
        Dim = 512, LatentsPerBank = 16, GeneralLatents = 64, Depth = 12, SelfAttentionHeads = 8, DecoderHeads = 8, FourierBands = 32,
    };

    public static MedformerConfig Large { get; } = new()
    {
        Dim = 1024, LatentsPerBank = 32, GeneralLatents = 128, Depth = 24, SelfAttentionHeads = 16, DecoderHeads = 16, FourierBands = 32,
    };

    public void Validate(string source = "config")
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new InvalidDataException($"{source}: {what}");
        }
        Require(Dim > 0, $"dim must be positive, not {Dim}");
        Require(SelfAttentionHeads > 0 && CrossAttentionHeads > 0 && DecoderHeads > 0, "attention heads must be positive");
        Require(Dim % SelfAttentionHeads == 0, $"dim {Dim} is not divisible by self_attention_heads {SelfAttentionHeads}");
        Require(Dim % CrossAttentionHeads == 0, $"dim {Dim} is not divisible by cross_attention_heads {CrossAttentionHeads}");
        Require(Dim % DecoderHeads == 0, $"dim {Dim} is not divisible by decoder_heads {DecoderHeads}");
        Require(LatentsPerBank > 0 && GeneralLatents >= 0, "latents_per_bank must be positive and general_latents not negative");
        Require(PatchSize2d > 0 && PatchSize3d > 0, "patch sizes must be positive");
        Require(Stem is "patch" or "conv", $"stem must be \"patch\" or \"conv\", not \"{Stem}\"");
        Require(StemChannels is >= 1 and <= 1024, $"stem_channels must be 1 to 1024, not {StemChannels}");
        Require(InChannels is >= 1 and <= 16, $"in_channels must be 1 to 16, not {InChannels}");
        Require(FourierBands > 0, "fourier_bands must be positive");
        Require(Depth > 0 && Repeats > 0 && Widening > 0, "depth, repeats and widening must be positive");
        Require(Dropout is >= 0 and < 1 && DropPath is >= 0 and < 1, "dropout and drop_path must be in [0, 1)");
        Require(QueryChunk > 0, "query_chunk must be positive");
        // Upper bounds: a config.json comes with downloaded checkpoints, and the model is built from it before any
        // weight is read, so a hostile one must not ask for terabytes. Each is far above the large preset.
        Require(Dim <= 16384, $"dim {Dim} is over the limit of 16384");
        Require(SelfAttentionHeads is > 0 and <= 256 && CrossAttentionHeads is > 0 and <= 256 && DecoderHeads is > 0 and <= 256,
            "attention heads must be 1 to 256");
        Require(LatentsPerBank <= 4096 && GeneralLatents <= 16384,
            $"latents_per_bank {LatentsPerBank} (at most 4096) or general_latents {GeneralLatents} (at most 16384) is too large");
        Require(PatchSize2d <= 64 && PatchSize3d <= 64, "patch sizes must be at most 64");
        Require(FourierBands <= 1024, $"fourier_bands {FourierBands} is over the limit of 1024");
        Require(Depth <= 256 && Repeats <= 64 && Widening <= 64,
            $"depth {Depth} (at most 256), repeats {Repeats} (at most 64) or widening {Widening} (at most 64) is too large");
        Require(QueryChunk <= 1 << 24, $"query_chunk {QueryChunk} is over the limit of {1 << 24}");
        foreach (var (name, vocabulary) in new[] { ("organs", Organs), ("modalities", Modalities), ("tasks", Tasks) })
            Require(vocabulary.Count <= 1024 && vocabulary.All(v => v.Length <= 64), $"{name}: at most 1024 names of at most 64 characters");
        double parameters = BlockParameters;
        Require(parameters <= 8e9, $"dim {Dim}, depth {Depth} and widening {Widening} make about {parameters:0.#e0} parameters, over the limit of 8e9");
        foreach (var (name, vocabulary) in new[] { ("organs", Organs), ("modalities", Modalities), ("dimensionalities", Dimensionalities), ("tasks", Tasks) })
        {
            Require(vocabulary.Contains("other") || name == "dimensionalities", $"{name} must contain 'other', the fallback for unknown values");
            Require(vocabulary.Distinct().Count() == vocabulary.Count, $"{name} has duplicates");
            Require(vocabulary.All(v => v.Length > 0 && v.All(c => char.IsAsciiLetterOrDigit(c) || c == '_')),
                $"{name}: names are ASCII letters, digits and '_'");
        }
        Require(Dimensionalities.SequenceEqual(["2d", "3d"]), "dimensionalities must be [\"2d\", \"3d\"]");
    }
}
