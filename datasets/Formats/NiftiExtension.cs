namespace Medformer.Datasets.Formats;

/// <summary>
/// One header extension of a single-file NIfTI (between the header and vox_offset): its code (nifti1.h's
/// NIFTI_ECODE_*, e.g. 4 AFNI, 6 comment, 32 CIfTI) and its size in bytes, the 8-byte esize/ecode prefix included.
/// </summary>
public sealed record NiftiExtension(int Code, int Size)
{
    public string Name => Code switch
    {
        0 => "ignore",
        2 => "DICOM",
        4 => "AFNI",
        6 => "comment",
        8 => "XCEDE",
        10 => "jimdiminfo",
        12 => "workflow_fwds",
        14 => "freesurfer",
        16 => "pypickle",
        18 => "mind_ident",
        20 => "b_value",
        22 => "spherical_direction",
        24 => "dt_component",
        26 => "shc_degreeorder",
        28 => "voxbo",
        30 => "caret",
        32 => "CIfTI",
        34 => "variable_frame_timing",
        38 => "eval",
        40 => "matlab",
        42 => "quantiphyse",
        44 => "mrs",
        _ => "unknown",
    };

    public override string ToString() => $"code {Code} ({Name}), {Size} bytes";
}
