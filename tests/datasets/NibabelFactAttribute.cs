using Xunit;

namespace Medformer.Tests.Datasets;

/// <summary>A fact that needs Debian's nibabel; skipped, saying so, where <c>/usr/bin/python3 -c "import nibabel"</c>
/// fails (scripts/setup.sh test installs python3-nibabel).</summary>
public sealed class NibabelFactAttribute : FactAttribute
{
    public NibabelFactAttribute()
    {
        if (!NiftiTestFiles.NibabelAvailable) Skip = "nibabel is absent: /usr/bin/python3 -c \"import nibabel\" failed";
    }
}
