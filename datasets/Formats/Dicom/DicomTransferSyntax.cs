namespace Medformer.Datasets.Formats;

/// <summary>
/// How a dataset is encoded (PS3.5 §10, Annex A): VR explicit or implicit, byte order, deflate, and whether pixel data
/// is encapsulated (compressed). Every syntax of PS3.6 Annex A has a name here, so a refusal can say what it met.
/// </summary>
public sealed record DicomTransferSyntax(string Uid, string Name, bool ExplicitVR, bool BigEndian, bool Deflated, bool Encapsulated)
{
    public const string ImplicitVRLittleEndianUid = "1.2.840.10008.1.2";
    public const string ExplicitVRLittleEndianUid = "1.2.840.10008.1.2.1";
    public const string DeflatedExplicitVRLittleEndianUid = "1.2.840.10008.1.2.1.99";
    public const string ExplicitVRBigEndianUid = "1.2.840.10008.1.2.2";

    public static readonly DicomTransferSyntax ImplicitVRLittleEndian = new(ImplicitVRLittleEndianUid, "Implicit VR Little Endian", false, false, false, false);
    public static readonly DicomTransferSyntax ExplicitVRLittleEndian = new(ExplicitVRLittleEndianUid, "Explicit VR Little Endian", true, false, false, false);
    public static readonly DicomTransferSyntax DeflatedExplicitVRLittleEndian = new(DeflatedExplicitVRLittleEndianUid, "Deflated Explicit VR Little Endian",
        true, false, true, false);
    public static readonly DicomTransferSyntax ExplicitVRBigEndian = new(ExplicitVRBigEndianUid, "Explicit VR Big Endian", true, true, false, false);

    /// <summary>Pixel data this reader can decode: native (uncompressed) pixels.</summary>
    public bool IsNative => !Encapsulated;

    public override string ToString() => $"{Name} ({Uid})";

    static readonly Dictionary<string, DicomTransferSyntax> Known = new[]
    {
        ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
        Compressed("1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian"),
        Compressed("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"),
        Compressed("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 and 4)"),
        Compressed("1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)"),
        Compressed("1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])"),
        Compressed("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression"),
        Compressed("1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless) Image Compression"),
        Compressed("1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)"),
        Compressed("1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression"),
        Compressed("1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)"),
        Compressed("1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component Image Compression"),
        Compressed("1.2.840.10008.1.2.4.94", "JPIP Referenced"),
        Compressed("1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate"),
        Compressed("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"),
        Compressed("1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level"),
        Compressed("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1"),
        Compressed("1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1"),
        Compressed("1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"),
        Compressed("1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video"),
        Compressed("1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"),
        Compressed("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1"),
        Compressed("1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1"),
        Compressed("1.2.840.10008.1.2.4.110", "JPEG XL Lossless"),
        Compressed("1.2.840.10008.1.2.4.111", "JPEG XL JPEG Recompression"),
        Compressed("1.2.840.10008.1.2.4.112", "JPEG XL"),
        Compressed("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)"),
        Compressed("1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)"),
        Compressed("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression"),
        Compressed("1.2.840.10008.1.2.5", "RLE Lossless"),
    }.ToDictionary(s => s.Uid);

    static DicomTransferSyntax Compressed(string uid, string name) => new(uid, name, true, false, false, true);

    /// <summary>The syntax a UID names, or null when it is not a standard one (a private syntax's encoding is unknown).</summary>
    public static DicomTransferSyntax? Find(string uid)
    {
        if (Known.TryGetValue(uid, out var syntax)) return syntax;
        // The retired JPEG processes (4.52 to 4.66) are encapsulated, explicit VR little endian like the others.
        if (uid.StartsWith("1.2.840.10008.1.2.4.", StringComparison.Ordinal) && int.TryParse(uid.AsSpan(20), out int n) && n is >= 52 and <= 66)
            return Compressed(uid, "JPEG (a retired process)");
        return null;
    }
}
