using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Medformer.Datasets.Formats;

/// <summary>
/// A NIfTI-1 (348 bytes), NIfTI-2 (540 bytes) or Analyze 7.5 (348 bytes, no magic) header, fields as nifti1.h and
/// nifti2.h name them, widened to one type per kind (NIfTI-1's int16 dims and float32 fields are read into the
/// NIfTI-2 widths). Arrays are as stored: <see cref="Dim"/>[0] is the rank, <see cref="Pixdim"/>[0] is qfac, and
/// axis 1 (x) varies fastest in the data.
/// </summary>
public sealed record NiftiHeader
{
    public const int Nifti1Size = 348;
    public const int Nifti2Size = 540;

    /// <summary>1 NIfTI-1, 2 NIfTI-2, 0 Analyze 7.5 (read with its SPM conventions, as nibabel reads it).</summary>
    public required int Version { get; init; }
    public bool BigEndian { get; init; }
    /// <summary>"n+1", "ni1", "n+2" or "ni2"; empty for Analyze.</summary>
    public string Magic { get; init; } = "";
    public int DimInfo { get; init; }
    public required long[] Dim { get; init; }
    public double IntentP1 { get; init; }
    public double IntentP2 { get; init; }
    public double IntentP3 { get; init; }
    public int IntentCode { get; init; }
    public string IntentName { get; init; } = "";
    public required int Datatype { get; init; }
    public required int Bitpix { get; init; }
    public long SliceStart { get; init; }
    public long SliceEnd { get; init; }
    public int SliceCode { get; init; }
    public required double[] Pixdim { get; init; }
    public double VoxOffset { get; init; }
    public double SclSlope { get; init; }
    public double SclInter { get; init; }
    public int XyztUnits { get; init; }
    public double CalMax { get; init; }
    public double CalMin { get; init; }
    public double SliceDuration { get; init; }
    /// <summary>Analyze's stored (unscaled) range, which SPM reads with cal_min/cal_max as a scaling.</summary>
    public int Glmax { get; init; }
    public int Glmin { get; init; }
    public double Toffset { get; init; }
    public string Descrip { get; init; } = "";
    public string AuxFile { get; init; } = "";
    public int QformCode { get; init; }
    public int SformCode { get; init; }
    public double QuaternB { get; init; }
    public double QuaternC { get; init; }
    public double QuaternD { get; init; }
    public double QoffsetX { get; init; }
    public double QoffsetY { get; init; }
    public double QoffsetZ { get; init; }
    public double[] SrowX { get; init; } = new double[4];
    public double[] SrowY { get; init; } = new double[4];
    public double[] SrowZ { get; init; } = new double[4];
    /// <summary>SPM's origin (1-based voxel of world 0) in an Analyze header's originator field; zeros otherwise.</summary>
    public int[] SpmOrigin { get; init; } = new int[3];
    /// <summary>The extensions of a single file, when the header was read with them.</summary>
    public IReadOnlyList<NiftiExtension> Extensions { get; init; } = [];

    public int HeaderSize => Version == 2 ? Nifti2Size : Nifti1Size;
    public string Format => Version switch { 0 => "Analyze 7.5", 1 => "NIfTI-1", _ => "NIfTI-2" };
    public int NDim => (int)Dim[0];
    /// <summary>Extents in storage order (x first), as nibabel's img.shape.</summary>
    public long[] Shape => Dim[1..(NDim + 1)];
    public NiftiDatatype DataType => NiftiDatatype.FromCode(Datatype) ?? throw new InvalidOperationException($"datatype {Datatype} is not a NIfTI datatype");
    public long VoxelCount => Shape.Aggregate(1L, (a, n) => checked(a * n));
    public long DataBytes => checked(VoxelCount * Bitpix + 7) / 8;

    /// <summary>qfac, the sign of the third qform axis: pixdim[0] when -1, else 1 (the standard's reading).</summary>
    public double Qfac => Pixdim[0] < 0 ? -1 : 1;

    /// <summary>Voxel sizes per axis (x first), as nibabel's get_zooms after its header fixes: pixdim[1..3] that are
    /// negative count as their magnitude, and zero or non-finite ones as 1.</summary>
    public double[] Zooms => Enumerable.Range(1, NDim).Select(i => i <= 3 ? SpatialZoom(Pixdim[i]) : Pixdim[i]).ToArray();

    /// <summary>Millimetres per spatial unit of xyzt_units: metres 1000, microns 0.001, mm or unknown 1.</summary>
    public double SpatialUnitInMm => (XyztUnits & 7) switch { 1 => 1000, 3 => 0.001, _ => 1 };

    /// <summary>scl_slope and scl_inter when they scale the data (nibabel: a slope of 0 or non-finite, or the identity
    /// 1 and 0, means none). Analyze as SPM2 (and nibabel) reads it: its scale factor with a non-finite intercept as
    /// 0, or failing a scale factor, the map from glmin..glmax to cal_min..cal_max.</summary>
    public (double Slope, double Inter)? Scaling
    {
        get
        {
            (double Slope, double Inter)? scaling = null;
            if (SclSlope != 0 && double.IsFinite(SclSlope))
                scaling = (SclSlope, Version == 0 && !double.IsFinite(SclInter) ? 0 : SclInter);
            else if (Version == 0 && Glmax != Glmin && CalMax != CalMin)
            {
                double slope = (CalMax - CalMin) / ((double)Glmax - Glmin);
                scaling = (slope, CalMin - slope * Glmin);
            }
            return scaling is (1, 0) ? null : scaling;
        }
    }

    /// <summary>The qform affine by the NIfTI-1 standard: R from the quaternion (a = sqrt(1 - b² - c² - d²), or a
    /// 180° rotation when that is near zero), columns scaled by the zooms, the third by qfac, then qoffset.</summary>
    public double[,] QformAffine
    {
        get
        {
            double b = QuaternB, c = QuaternC, d = QuaternD, a = 1 - (b * b + c * c + d * d);
            if (a < 1e-7)
            {
                double norm = 1 / Math.Sqrt(b * b + c * c + d * d);
                (a, b, c, d) = (0, b * norm, c * norm, d * norm);
            }
            else a = Math.Sqrt(a);
            double x = SpatialZoom(Pixdim[1]), y = SpatialZoom(Pixdim[2]), z = SpatialZoom(Pixdim[3]) * Qfac;
            return new double[,]
            {
                { (a * a + b * b - c * c - d * d) * x, 2 * (b * c - a * d) * y, 2 * (b * d + a * c) * z, QoffsetX },
                { 2 * (b * c + a * d) * x, (a * a + c * c - b * b - d * d) * y, 2 * (c * d - a * b) * z, QoffsetY },
                { 2 * (b * d - a * c) * x, 2 * (c * d + a * b) * y, (a * a + d * d - c * c - b * b) * z, QoffsetZ },
                { 0, 0, 0, 1 },
            };
        }
    }

    public double[,] SformAffine => new double[,]
    {
        { SrowX[0], SrowX[1], SrowX[2], SrowX[3] },
        { SrowY[0], SrowY[1], SrowY[2], SrowY[3] },
        { SrowZ[0], SrowZ[1], SrowZ[2], SrowZ[3] },
        { 0, 0, 0, 1 },
    };

    /// <summary>nibabel's affine from the zooms alone (get_base_affine): x flipped (radiological storage), the centre
    /// voxel at world 0, or for Analyze SPM's origin voxel when the header has a plausible one.</summary>
    public double[,] BaseAffine
    {
        get
        {
            var zooms = new double[3];
            var extents = new double[3];
            for (int i = 0; i < 3; i++)
            {
                zooms[i] = i < NDim ? SpatialZoom(Pixdim[i + 1]) : 1;
                extents[i] = i < NDim ? Dim[i + 1] : 1;
            }
            zooms[0] = -zooms[0];
            double[] origin = UsesSpmOrigin
                ? SpmOrigin.Select(o => o - 1.0).ToArray()
                : extents.Select(n => (n - 1) / 2).ToArray();
            var affine = new double[4, 4];
            for (int i = 0; i < 3; i++)
            {
                affine[i, i] = zooms[i];
                affine[i, 3] = -origin[i] * zooms[i];
            }
            affine[3, 3] = 1;
            return affine;
        }
    }

    /// <summary>The affine nibabel's get_best_affine picks: the sform if its code is a valid non-zero one, else the
    /// qform if its code is, else <see cref="BaseAffine"/>.</summary>
    public double[,] BestAffine => BestAffineSource switch
    {
        "sform" => SformAffine,
        "qform" => QformAffine,
        _ => BaseAffine,
    };

    /// <summary>"sform", "qform", or "pixdim" (nibabel's fallback; "pixdim and SPM origin" for Analyze).</summary>
    public string BestAffineSource =>
        IsValidXformCode(SformCode) && SformCode != 0 ? "sform"
        : IsValidXformCode(QformCode) && QformCode != 0 ? "qform"
        : UsesSpmOrigin ? "pixdim and SPM origin" : "pixdim";

    bool UsesSpmOrigin
    {
        get
        {
            if (Version != 0 || SpmOrigin.All(o => o == 0)) return false;
            for (int i = 0; i < 3; i++)
                if (SpmOrigin[i] <= -Dim[i + 1] || SpmOrigin[i] >= Dim[i + 1] * 2) return false;
            return true;
        }
    }

    /// <summary>Where the voxels start: vox_offset, except that a single file's 0 means just after the header and
    /// its 4 extension-flag bytes (as nibabel reads it). Faults name <paramref name="source"/>.</summary>
    public long DataOffset(bool singleFile, string source)
    {
        long offset = (long)VoxOffset;  // a float in NIfTI-1; nibabel truncates
        long minimum = HeaderSize + 4;
        if (!singleFile) return offset;
        if (offset == 0) return minimum;
        if (offset < minimum)
            throw Bad(source, $"vox_offset {Number(VoxOffset)} lies inside the {minimum}-byte header and extension flag of a single file");
        return offset;
    }

    public static bool IsValidXformCode(int code) => code is >= 0 and <= 5;

    public static string XformName(int code) => code switch
    {
        0 => "unknown",
        1 => "scanner",
        2 => "aligned",
        3 => "talairach",
        4 => "mni",
        5 => "template",
        _ => "invalid",
    };

    static double SpatialZoom(double pixdim) => pixdim == 0 || !double.IsFinite(pixdim) ? 1 : Math.Abs(pixdim);

    /// <summary>Reads and validates a header from the start of <paramref name="stream"/>; <paramref name="source"/>
    /// names it in errors. With <paramref name="allowAnalyze"/> (a .hdr of a pair), a 348-byte header without the
    /// NIfTI magic is read as Analyze 7.5; otherwise it is refused.</summary>
    public static NiftiHeader Read(Stream stream, string source, bool allowAnalyze)
    {
        var block = new byte[Nifti2Size];
        ReadExactly(stream, block.AsSpan(0, 4), source, "sizeof_hdr");
        int little = BinaryPrimitives.ReadInt32LittleEndian(block), big = BinaryPrimitives.ReadInt32BigEndian(block);
        (int version, bool bigEndian) = (little, big) switch
        {
            (Nifti1Size, _) => (1, false),
            (Nifti2Size, _) => (2, false),
            (_, Nifti1Size) => (1, true),
            (_, Nifti2Size) => (2, true),
            _ => throw Bad(source, $"sizeof_hdr is {little}, neither 348 (NIfTI-1, Analyze) nor 540 (NIfTI-2) in either byte order: not a NIfTI file"),
        };
        int size = version == 2 ? Nifti2Size : Nifti1Size;
        ReadExactly(stream, block.AsSpan(4, size - 4), source, "the header");
        var fields = new Fields(block, bigEndian);
        var header = version == 2 ? ParseNifti2(fields, source) : ParseNifti1(fields, source, allowAnalyze);
        header.Validate(source);
        return header;
    }

    static NiftiHeader ParseNifti1(Fields f, string source, bool allowAnalyze)
    {
        var magic = f.Bytes(344, 4);
        bool nifti = magic.SequenceEqual("n+1\0"u8) || magic.SequenceEqual("ni1\0"u8);
        if (!nifti && !allowAnalyze)
            throw Bad(source, $"magic is \"{Printable(magic)}\", not \"n+1\" (or \"ni1\"): not a NIfTI-1 file");
        long[] dim = Enumerable.Range(0, 8).Select(i => (long)f.I16(40 + 2 * i)).ToArray();
        double[] pixdim = Enumerable.Range(0, 8).Select(i => (double)f.F32(76 + 4 * i)).ToArray();
        if (!nifti)
        {
            // Analyze 7.5: the fields past pixdim that NIfTI-1 took over held other things; SPM's scale factor
            // (funused1) and intercept (funused2) sit where scl_slope and scl_inter are, and its origin in originator.
            return new NiftiHeader
            {
                Version = 0,
                BigEndian = f.BigEndian,
                Dim = dim,
                Datatype = f.I16(70),
                Bitpix = f.I16(72),
                Pixdim = pixdim,
                VoxOffset = f.F32(108),
                SclSlope = f.F32(112),
                SclInter = f.F32(116),
                CalMax = f.F32(124),
                CalMin = f.F32(128),
                Glmax = f.I32(140),
                Glmin = f.I32(144),
                Descrip = f.Text(148, 80),
                AuxFile = f.Text(228, 24),
                SpmOrigin = [f.I16(253), f.I16(255), f.I16(257)],
            };
        }
        return new NiftiHeader
        {
            Version = 1,
            BigEndian = f.BigEndian,
            Magic = f.Text(344, 4),
            DimInfo = f.U8(39),
            Dim = dim,
            IntentP1 = f.F32(56),
            IntentP2 = f.F32(60),
            IntentP3 = f.F32(64),
            IntentCode = f.I16(68),
            Datatype = f.I16(70),
            Bitpix = f.I16(72),
            SliceStart = f.I16(74),
            Pixdim = pixdim,
            VoxOffset = f.F32(108),
            SclSlope = f.F32(112),
            SclInter = f.F32(116),
            SliceEnd = f.I16(120),
            SliceCode = f.U8(122),
            XyztUnits = f.U8(123),
            CalMax = f.F32(124),
            CalMin = f.F32(128),
            SliceDuration = f.F32(132),
            Toffset = f.F32(136),
            Glmax = f.I32(140),
            Glmin = f.I32(144),
            Descrip = f.Text(148, 80),
            AuxFile = f.Text(228, 24),
            QformCode = f.I16(252),
            SformCode = f.I16(254),
            QuaternB = f.F32(256),
            QuaternC = f.F32(260),
            QuaternD = f.F32(264),
            QoffsetX = f.F32(268),
            QoffsetY = f.F32(272),
            QoffsetZ = f.F32(276),
            SrowX = [f.F32(280), f.F32(284), f.F32(288), f.F32(292)],
            SrowY = [f.F32(296), f.F32(300), f.F32(304), f.F32(308)],
            SrowZ = [f.F32(312), f.F32(316), f.F32(320), f.F32(324)],
            IntentName = f.Text(328, 16),
        };
    }

    static NiftiHeader ParseNifti2(Fields f, string source)
    {
        var magic = f.Bytes(4, 4);
        if (!magic.SequenceEqual("n+2\0"u8) && !magic.SequenceEqual("ni2\0"u8))
            throw Bad(source, $"magic is \"{Printable(magic)}\", not \"n+2\" (or \"ni2\"): not a NIfTI-2 file");
        var eol = f.Bytes(8, 4);
        if (!eol.SequenceEqual(new byte[] { 13, 10, 26, 10 }) && !eol.SequenceEqual(new byte[4]))
            throw Bad(source,
                $"the magic's end-of-line check bytes are {string.Join(" ", eol.ToArray())}, not 13 10 26 10: the file was altered by a text-mode transfer");
        return new NiftiHeader
        {
            Version = 2,
            BigEndian = f.BigEndian,
            Magic = f.Text(4, 4),
            Datatype = f.I16(12),
            Bitpix = f.I16(14),
            Dim = Enumerable.Range(0, 8).Select(i => f.I64(16 + 8 * i)).ToArray(),
            IntentP1 = f.F64(80),
            IntentP2 = f.F64(88),
            IntentP3 = f.F64(96),
            Pixdim = Enumerable.Range(0, 8).Select(i => f.F64(104 + 8 * i)).ToArray(),
            VoxOffset = f.I64(168),
            SclSlope = f.F64(176),
            SclInter = f.F64(184),
            CalMax = f.F64(192),
            CalMin = f.F64(200),
            SliceDuration = f.F64(208),
            Toffset = f.F64(216),
            SliceStart = f.I64(224),
            SliceEnd = f.I64(232),
            Descrip = f.Text(240, 80),
            AuxFile = f.Text(320, 24),
            QformCode = f.I32(344),
            SformCode = f.I32(348),
            QuaternB = f.F64(352),
            QuaternC = f.F64(360),
            QuaternD = f.F64(368),
            QoffsetX = f.F64(376),
            QoffsetY = f.F64(384),
            QoffsetZ = f.F64(392),
            SrowX = [f.F64(400), f.F64(408), f.F64(416), f.F64(424)],
            SrowY = [f.F64(432), f.F64(440), f.F64(448), f.F64(456)],
            SrowZ = [f.F64(464), f.F64(472), f.F64(480), f.F64(488)],
            SliceCode = f.I32(496),
            XyztUnits = f.I32(500),
            IntentCode = f.I32(504),
            IntentName = f.Text(508, 16),
            DimInfo = f.U8(524),
        };
    }

    void Validate(string source)
    {
        if (Dim[0] is < 1 or > 7) throw Bad(source, $"dim[0] is {Dim[0]}, not a rank between 1 and 7");
        for (int i = 1; i <= NDim; i++)
            if (Dim[i] < 1) throw Bad(source, $"dim[{i}] is {Dim[i]}: every extent up to dim[0] = {NDim} must be at least 1");
        var type = NiftiDatatype.FromCode(Datatype)
            ?? throw Bad(source, $"datatype {Datatype} is not a NIfTI datatype");
        if (Bitpix != type.Bitpix)
            throw Bad(source, $"bitpix is {Bitpix} but datatype {type.Name} has {type.Bitpix} bits per voxel");
        try
        {
            _ = DataBytes;
        }
        catch (OverflowException)
        {
            throw Bad(source, $"dim [{string.Join(", ", Shape)}] of {type.Name} overflows 64-bit sizes");
        }
        if (!double.IsFinite(VoxOffset) || VoxOffset < 0 || VoxOffset >= long.MaxValue)
            throw Bad(source, $"vox_offset {Number(VoxOffset)} is not a byte offset");
    }

    /// <summary>The header as nib-ls / fslhd would list it, for <c>medformer inspect</c>.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> ToKeyValues()
    {
        var list = new List<KeyValuePair<string, string>>();
        void Add(string key, string value) => list.Add(new(key, value));
        Add("format", Version == 0 ? Format : $"{Format} ({(Magic is "n+1" or "n+2" ? "single file" : "pair")})");
        Add("byte_order", BigEndian ? "big endian" : "little endian");
        Add("sizeof_hdr", HeaderSize.ToString(CultureInfo.InvariantCulture));
        if (Version != 0) Add("magic", Magic);
        Add("dim", Numbers(Dim.Select(d => (double)d)));
        Add("datatype", DataType.ToString());
        Add("bitpix", Bitpix.ToString(CultureInfo.InvariantCulture));
        Add("pixdim", Numbers(Pixdim));
        Add("vox_offset", Number(VoxOffset));
        Add("scl_slope", Number(SclSlope));
        Add("scl_inter", Number(SclInter));
        Add("cal_min", Number(CalMin));
        Add("cal_max", Number(CalMax));
        Add("descrip", Descrip);
        Add("aux_file", AuxFile);
        if (Version == 0)
        {
            Add("glmin_glmax", $"{Glmin} {Glmax}");
            Add("spm_origin", Numbers(SpmOrigin.Select(o => (double)o)));
        }
        else
        {
            Add("xyzt_units", $"{XyztUnits} ({Units()})");
            Add("intent_code", IntentCode.ToString(CultureInfo.InvariantCulture));
            Add("intent_name", IntentName);
            Add("intent_p", Numbers([IntentP1, IntentP2, IntentP3]));
            Add("dim_info", DimInfo.ToString(CultureInfo.InvariantCulture));
            Add("slice_code", SliceCode.ToString(CultureInfo.InvariantCulture));
            Add("slice_start", SliceStart.ToString(CultureInfo.InvariantCulture));
            Add("slice_end", SliceEnd.ToString(CultureInfo.InvariantCulture));
            Add("slice_duration", Number(SliceDuration));
            Add("toffset", Number(Toffset));
            Add("qform_code", $"{QformCode} ({XformName(QformCode)})");
            Add("sform_code", $"{SformCode} ({XformName(SformCode)})");
            Add("quatern_bcd", Numbers([QuaternB, QuaternC, QuaternD]));
            Add("qoffset_xyz", Numbers([QoffsetX, QoffsetY, QoffsetZ]));
            Add("srow_x", Numbers(SrowX));
            Add("srow_y", Numbers(SrowY));
            Add("srow_z", Numbers(SrowZ));
        }
        Add("affine_source", BestAffineSource);
        var best = BestAffine;
        for (int r = 0; r < 3; r++) Add($"affine_row{r}", Numbers(Enumerable.Range(0, 4).Select(c => best[r, c])));
        Add("extensions", Extensions.Count == 0 ? "none" : string.Join("; ", Extensions));
        return list;
    }

    string Units()
    {
        string space = (XyztUnits & 7) switch { 0 => "unknown", 1 => "m", 2 => "mm", 3 => "um", _ => "invalid" };
        string time = (XyztUnits & 0x38) switch { 0 => "unknown", 8 => "s", 16 => "ms", 24 => "us", 32 => "Hz", 40 => "ppm", 48 => "rad/s", _ => "invalid" };
        return $"{space}, {time}";
    }

    static string Number(double value) => value.ToString("G9", CultureInfo.InvariantCulture);

    static string Numbers(IEnumerable<double> values) => string.Join(" ", values.Select(Number));

    static string Printable(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder();
        foreach (byte b in bytes) text.Append(b is >= 0x20 and < 0x7F and not (byte)'"' and not (byte)'\\' ? (char)b : $"\\x{b:x2}");
        return text.ToString();
    }

    /// <summary>The 348-byte little-endian NIfTI-1 header and 4 zero extension-flag bytes (the writer's header).
    /// Extents must fit int16, the caller checks.</summary>
    internal byte[] EncodeNifti1()
    {
        var b = new byte[Nifti1Size + 4];
        var s = b.AsSpan();
        BinaryPrimitives.WriteInt32LittleEndian(s, Nifti1Size);
        b[38] = (byte)'r';  // "regular", as nibabel and the reference library write it
        b[39] = (byte)DimInfo;
        for (int i = 0; i < 8; i++) BinaryPrimitives.WriteInt16LittleEndian(s[(40 + 2 * i)..], checked((short)Dim[i]));
        BinaryPrimitives.WriteSingleLittleEndian(s[56..], (float)IntentP1);
        BinaryPrimitives.WriteSingleLittleEndian(s[60..], (float)IntentP2);
        BinaryPrimitives.WriteSingleLittleEndian(s[64..], (float)IntentP3);
        BinaryPrimitives.WriteInt16LittleEndian(s[68..], checked((short)IntentCode));
        BinaryPrimitives.WriteInt16LittleEndian(s[70..], checked((short)Datatype));
        BinaryPrimitives.WriteInt16LittleEndian(s[72..], checked((short)Bitpix));
        BinaryPrimitives.WriteInt16LittleEndian(s[74..], checked((short)SliceStart));
        for (int i = 0; i < 8; i++) BinaryPrimitives.WriteSingleLittleEndian(s[(76 + 4 * i)..], (float)Pixdim[i]);
        BinaryPrimitives.WriteSingleLittleEndian(s[108..], (float)VoxOffset);
        BinaryPrimitives.WriteSingleLittleEndian(s[112..], (float)SclSlope);
        BinaryPrimitives.WriteSingleLittleEndian(s[116..], (float)SclInter);
        BinaryPrimitives.WriteInt16LittleEndian(s[120..], checked((short)SliceEnd));
        b[122] = (byte)SliceCode;
        b[123] = (byte)XyztUnits;
        BinaryPrimitives.WriteSingleLittleEndian(s[124..], (float)CalMax);
        BinaryPrimitives.WriteSingleLittleEndian(s[128..], (float)CalMin);
        BinaryPrimitives.WriteSingleLittleEndian(s[132..], (float)SliceDuration);
        BinaryPrimitives.WriteSingleLittleEndian(s[136..], (float)Toffset);
        WriteText(s.Slice(148, 80), Descrip);
        WriteText(s.Slice(228, 24), AuxFile);
        BinaryPrimitives.WriteInt16LittleEndian(s[252..], checked((short)QformCode));
        BinaryPrimitives.WriteInt16LittleEndian(s[254..], checked((short)SformCode));
        double[] quatern = [QuaternB, QuaternC, QuaternD, QoffsetX, QoffsetY, QoffsetZ];
        for (int i = 0; i < 6; i++) BinaryPrimitives.WriteSingleLittleEndian(s[(256 + 4 * i)..], (float)quatern[i]);
        double[][] rows = [SrowX, SrowY, SrowZ];
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                BinaryPrimitives.WriteSingleLittleEndian(s[(280 + 16 * r + 4 * c)..], (float)rows[r][c]);
        WriteText(s.Slice(328, 16), IntentName);
        WriteText(s.Slice(344, 4), Magic);
        return b;
    }

    // Latin-1, cut to leave the terminating NUL the C structs expect.
    static void WriteText(Span<byte> field, string text)
    {
        var bytes = Encoding.Latin1.GetBytes(text);
        bytes.AsSpan(0, Math.Min(bytes.Length, field.Length - 1)).CopyTo(field);
    }

    static void ReadExactly(Stream stream, Span<byte> buffer, string source, string what)
    {
        try
        {
            stream.ReadExactly(buffer);
        }
        catch (EndOfStreamException)
        {
            throw Bad(source, $"truncated: the file ends inside {what}");
        }
    }

    internal static InvalidDataException Bad(string source, string fault) => new($"{source}: {fault}");

    /// <summary>Typed reads at byte offsets of a header block in its byte order.</summary>
    readonly struct Fields(byte[] block, bool bigEndian)
    {
        public bool BigEndian => bigEndian;

        public ReadOnlySpan<byte> Bytes(int offset, int length) => block.AsSpan(offset, length);

        public int U8(int offset) => block[offset];

        public short I16(int offset) => bigEndian
            ? BinaryPrimitives.ReadInt16BigEndian(block.AsSpan(offset)) : BinaryPrimitives.ReadInt16LittleEndian(block.AsSpan(offset));

        public int I32(int offset) => bigEndian
            ? BinaryPrimitives.ReadInt32BigEndian(block.AsSpan(offset)) : BinaryPrimitives.ReadInt32LittleEndian(block.AsSpan(offset));

        public long I64(int offset) => bigEndian
            ? BinaryPrimitives.ReadInt64BigEndian(block.AsSpan(offset)) : BinaryPrimitives.ReadInt64LittleEndian(block.AsSpan(offset));

        public float F32(int offset) => bigEndian
            ? BinaryPrimitives.ReadSingleBigEndian(block.AsSpan(offset)) : BinaryPrimitives.ReadSingleLittleEndian(block.AsSpan(offset));

        public double F64(int offset) => bigEndian
            ? BinaryPrimitives.ReadDoubleBigEndian(block.AsSpan(offset)) : BinaryPrimitives.ReadDoubleLittleEndian(block.AsSpan(offset));

        /// <summary>A C string field: Latin-1 up to the first NUL.</summary>
        public string Text(int offset, int length)
        {
            var span = block.AsSpan(offset, length);
            int end = span.IndexOf((byte)0);
            return Encoding.Latin1.GetString(end < 0 ? span : span[..end]);
        }
    }
}
