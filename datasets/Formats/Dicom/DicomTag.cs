namespace Medformer.Datasets.Formats;

/// <summary>A data element tag (group, element), written as dcmdump and pydicom do: "(0028,0010)".</summary>
public readonly record struct DicomTag(ushort Group, ushort Element) : IComparable<DicomTag>
{
    public uint Value => (uint)Group << 16 | Element;

    /// <summary>Odd groups hold private (vendor) elements.</summary>
    public bool IsPrivate => (Group & 1) == 1;

    public int CompareTo(DicomTag other) => Value.CompareTo(other.Value);

    public override string ToString() => $"({Group:X4},{Element:X4})";

    public static DicomTag FromValue(uint value) => new((ushort)(value >> 16), (ushort)value);

    // Item and delimiters: structure, not data; they have no VR in any transfer syntax.
    public static readonly DicomTag Item = new(0xFFFE, 0xE000);
    public static readonly DicomTag ItemDelimitation = new(0xFFFE, 0xE00D);
    public static readonly DicomTag SequenceDelimitation = new(0xFFFE, 0xE0DD);

    public static readonly DicomTag TransferSyntaxUID = new(0x0002, 0x0010);
    public static readonly DicomTag SOPClassUID = new(0x0008, 0x0016);
    public static readonly DicomTag SOPInstanceUID = new(0x0008, 0x0018);
    public static readonly DicomTag Modality = new(0x0008, 0x0060);
    public static readonly DicomTag SeriesDescription = new(0x0008, 0x103E);
    public static readonly DicomTag PatientID = new(0x0010, 0x0020);
    public static readonly DicomTag SliceThickness = new(0x0018, 0x0050);
    public static readonly DicomTag SpacingBetweenSlices = new(0x0018, 0x0088);
    public static readonly DicomTag ImagerPixelSpacing = new(0x0018, 0x1164);
    public static readonly DicomTag StudyInstanceUID = new(0x0020, 0x000D);
    public static readonly DicomTag SeriesInstanceUID = new(0x0020, 0x000E);
    public static readonly DicomTag SeriesNumber = new(0x0020, 0x0011);
    public static readonly DicomTag InstanceNumber = new(0x0020, 0x0013);
    public static readonly DicomTag ImagePositionPatient = new(0x0020, 0x0032);
    public static readonly DicomTag ImageOrientationPatient = new(0x0020, 0x0037);
    public static readonly DicomTag PlanePositionSequence = new(0x0020, 0x9113);
    public static readonly DicomTag PlaneOrientationSequence = new(0x0020, 0x9116);
    public static readonly DicomTag SamplesPerPixel = new(0x0028, 0x0002);
    public static readonly DicomTag PhotometricInterpretation = new(0x0028, 0x0004);
    public static readonly DicomTag PlanarConfiguration = new(0x0028, 0x0006);
    public static readonly DicomTag NumberOfFrames = new(0x0028, 0x0008);
    public static readonly DicomTag Rows = new(0x0028, 0x0010);
    public static readonly DicomTag Columns = new(0x0028, 0x0011);
    public static readonly DicomTag PixelSpacing = new(0x0028, 0x0030);
    public static readonly DicomTag BitsAllocated = new(0x0028, 0x0100);
    public static readonly DicomTag BitsStored = new(0x0028, 0x0101);
    public static readonly DicomTag HighBit = new(0x0028, 0x0102);
    public static readonly DicomTag PixelRepresentation = new(0x0028, 0x0103);
    public static readonly DicomTag RescaleIntercept = new(0x0028, 0x1052);
    public static readonly DicomTag RescaleSlope = new(0x0028, 0x1053);
    public static readonly DicomTag RescaleType = new(0x0028, 0x1054);
    public static readonly DicomTag ModalityLUTSequence = new(0x0028, 0x3000);
    public static readonly DicomTag PixelMeasuresSequence = new(0x0028, 0x9110);
    public static readonly DicomTag GridFrameOffsetVector = new(0x3004, 0x000C);
    public static readonly DicomTag DoseGridScaling = new(0x3004, 0x000E);
    public static readonly DicomTag SharedFunctionalGroupsSequence = new(0x5200, 0x9229);
    public static readonly DicomTag PerFrameFunctionalGroupsSequence = new(0x5200, 0x9230);
    public static readonly DicomTag FloatPixelData = new(0x7FE0, 0x0008);
    public static readonly DicomTag DoubleFloatPixelData = new(0x7FE0, 0x0009);
    public static readonly DicomTag PixelData = new(0x7FE0, 0x0010);
}
