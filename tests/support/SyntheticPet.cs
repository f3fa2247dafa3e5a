using Medformer.Datasets.Formats;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Tests;

/// <summary>
/// PET-like restoration studies in PetCtCorpus's layout (study folders holding pet_30s, pet_60s, pet_90s as NIfTI):
/// a smooth activity map (a warm body, hot spheres), each exposure a Poisson draw of its counts scaled back to
/// activity, so the noise falls as 1/√seconds.
/// </summary>
static class SyntheticPet
{
    public static Tensor Activity(long size, Generator generator)
    {
        using var scope = NewDisposeScope();
        var axis = linspace(-1, 1, size);
        var grid = meshgrid([axis, axis, axis], indexing: "ij");
        var r2 = grid[0].square() + grid[1].square() + grid[2].square();
        var activity = (r2 < 0.8).to(ScalarType.Float32) * 0.5 + 0.05;
        for (int sphere = 0; sphere < 3; sphere++)
        {
            var centre = (rand(3, generator: generator) - 0.5) * 1.0;
            var d2 = (grid[0] - centre[0]).square() + (grid[1] - centre[1]).square() + (grid[2] - centre[2]).square();
            activity += (rand(1, generator: generator) * 1.5 + 0.5) * (-d2 / 0.04).exp();
        }
        return scope.MoveToOuter(activity);
    }

    /// <summary>An exposure of <paramref name="seconds"/>: Poisson counts at <paramref name="sensitivity"/> counts per second per unit activity.</summary>
    public static Tensor Exposure(Tensor activity, int seconds, Generator generator, double sensitivity = 0.5)
    {
        using var scope = NewDisposeScope();
        double rate = seconds * sensitivity;
        return scope.MoveToOuter(poisson(activity * rate, generator) / rate);
    }

    /// <summary>Writes <paramref name="count"/> studies of size³ voxels (2 mm) under <paramref name="root"/>.</summary>
    public static string Write(string root, int count, long size, long seed)
    {
        Directory.CreateDirectory(root);
        using var generator = new Generator((ulong)seed);
        for (int i = 0; i < count; i++)
        {
            string study = Directory.CreateDirectory(Path.Combine(root, $"patient{i:D3}")).FullName;
            using var activity = Activity(size, generator);
            foreach (int seconds in new[] { 30, 60, 90 })
            {
                using var exposure = Exposure(activity, seconds, generator);
                NiftiWriter.Write(Path.Combine(study, $"pet_{seconds}s.nii.gz"), exposure, [2.0, 2.0, 2.0]);
            }
        }
        return root;
    }
}
