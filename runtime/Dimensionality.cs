using System.Text.Json;
using System.Text.Json.Serialization;

namespace Medformer.Runtime;

/// <summary>
/// Images (2D: [C,H,W], a batch [B,C,H,W]) or volumes (3D: [C,D,H,W], a batch [B,C,D,H,W]). Written "2d" and
/// "3d" wherever it is stored or named: configs, sample metadata, cache indexes, latent-bank weight names.
/// </summary>
[JsonConverter(typeof(DimensionalityJsonConverter))]
public sealed class Dimensionality : IEquatable<Dimensionality>
{
    public static readonly Dimensionality Image = new(2), Volume = new(3);

    Dimensionality(int spatialAxes) => SpatialAxes = spatialAxes;

    /// <summary>2 or 3.</summary>
    public int SpatialAxes { get; }

    /// <summary>"2d" or "3d".</summary>
    public string Name => SpatialAxes == 3 ? "3d" : "2d";

    public bool IsVolume => SpatialAxes == 3;

    /// <summary>"2d" or "3d"; anything else is an <see cref="ArgumentException"/> naming <paramref name="where"/>.</summary>
    public static Dimensionality Parse(string text, string where = "dimensionality") => TryParse(text)
        ?? throw new ArgumentException($"{where}: '{text}' must be 2d or 3d");

    public static Dimensionality? TryParse(string? text) => text switch
    {
        "2d" => Image,
        "3d" => Volume,
        _ => null,
    };

    /// <summary>The dimensionality of a sample with <paramref name="axes"/> spatial axes (2 or 3).</summary>
    public static Dimensionality OfSpatialAxes(int axes) => axes switch
    {
        2 => Image,
        3 => Volume,
        _ => throw new ArgumentException($"{axes} spatial axes: expected 2 (an image) or 3 (a volume)"),
    };

    /// <summary>The dimensionality of a batch [B,C,H,W] or [B,C,D,H,W] by its rank.</summary>
    public static Dimensionality OfBatchRank(long rank) => OfSpatialAxes((int)rank - 2);

    public bool Equals(Dimensionality? other) => other is not null && other.SpatialAxes == SpatialAxes;

    public override bool Equals(object? obj) => Equals(obj as Dimensionality);

    public override int GetHashCode() => SpatialAxes;

    public static bool operator ==(Dimensionality? a, Dimensionality? b) => a?.SpatialAxes == b?.SpatialAxes;

    public static bool operator !=(Dimensionality? a, Dimensionality? b) => !(a == b);

    public override string ToString() => Name;
}

/// <summary>Reads and writes a <see cref="Dimensionality"/> as "2d" or "3d".</summary>
public sealed class DimensionalityJsonConverter : JsonConverter<Dimensionality>
{
    public override Dimensionality Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        Dimensionality.TryParse(reader.GetString()) ?? throw new JsonException($"dimensionality '{reader.GetString()}': expected 2d or 3d");

    public override void Write(Utf8JsonWriter writer, Dimensionality value, JsonSerializerOptions options) => writer.WriteStringValue(value.Name);
}
