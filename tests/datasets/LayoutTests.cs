using Medformer.Datasets.Formats;
using Medformer.Datasets.Layouts;
using Xunit;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Tests.Datasets;

/// <summary>The Medical Segmentation Decathlon and PET-CT study layouts, on NIfTI files written here.</summary>
public sealed class LayoutTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-layouts-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static void Nifti(string path, Tensor voxels, double[] spacing)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        NiftiWriter.Write(path, voxels, spacing);
    }

    string Msd(string task, string datasetJson)
    {
        string folder = Path.Combine(root, task);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "dataset.json"), datasetJson);
        return folder;
    }

    const string Spleen = """
        {
          "name": "Spleen", "tensorImageSize": "3D", "modality": {"0": "CT"},
          "labels": {"0": "background", "1": "spleen"}, "numTraining": 2, "numTest": 1,
          "training": [{"image": "./imagesTr/spleen_2.nii.gz", "label": "./labelsTr/spleen_2.nii.gz"},
                       {"image": "./imagesTr/spleen_3.nii.gz", "label": "./labelsTr/spleen_3.nii.gz"}],
          "test": ["./imagesTs/spleen_1.nii.gz"]
        }
        """;

    [Fact]
    public void AnMsdTaskGivesVolumesWithTheirLabelMaps()
    {
        string folder = Msd("Task09_Spleen", Spleen);
        foreach (int i in new[] { 2, 3 })
        {
            Nifti(Path.Combine(folder, "imagesTr", $"spleen_{i}.nii.gz"), (arange(4 * 5 * 6, dtype: ScalarType.Int16) - 1000 * i).view(4, 5, 6), [2.5, 0.8,
                0.8]);
            Nifti(Path.Combine(folder, "labelsTr", $"spleen_{i}.nii.gz"), (arange(4 * 5 * 6) % 2).to(ScalarType.Byte).view(4, 5, 6), [2.5, 0.8, 0.8]);
        }
        Nifti(Path.Combine(folder, "imagesTs", "spleen_1.nii.gz"), zeros(4, 5, 6), [2.5, 0.8, 0.8]);
        var training = new MsdCorpus(folder);
        Assert.Equal(("abdomen", "ct", 2L), (training.Organ, training.Modality, training.Count));
        Assert.Equal(["background", "spleen"], training.Labels);
        using (var sample = training.Get(1))
        {
            Assert.Equal([1L, 4, 5, 6], sample.Image.shape);
            Assert.Equal(-3000f, sample.Image.min().item<float>());
            Assert.Equal(ScalarType.Int64, sample.Target!.dtype);
            Assert.Equal([1L, 4, 5, 6], sample.Target.shape);
            Assert.Equal([2.5, 0.8, 0.8], sample.Meta.Spacing.Select(s => Math.Round(s, 4)));
            Assert.EndsWith("spleen_3.nii.gz", sample.Meta.Source);
        }
        var test = new MsdCorpus(folder, "test");
        using (var sample = test.Get(0)) Assert.Null(sample.Target);
    }

    [Fact]
    public void MultiModalMsdImagesBecomeChannels()
    {
        string folder = Msd("Task01_BrainTumour", """
            {"name": "BRATS", "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}, "labels": {"0": "background", "1": "edema"},
             "training": [{"image": "./imagesTr/b.nii.gz", "label": "./labelsTr/b.nii.gz"}], "test": []}
            """);
        Nifti(Path.Combine(folder, "imagesTr", "b.nii.gz"), rand(4, 3, 5, 6), [1, 1, 1]);  // [t,z,y,x]: 4 modalities
        Nifti(Path.Combine(folder, "labelsTr", "b.nii.gz"), zeros(3, 5, 6, dtype: ScalarType.Byte), [1, 1, 1]);
        var corpus = new MsdCorpus(folder);
        Assert.Equal(("brain", "mri"), (corpus.Organ, corpus.Modality));
        using var sample = corpus.Get(0);
        Assert.Equal([4L, 3, 5, 6], sample.Image.shape);
    }

    [Fact]
    public void MsdFaultsNameTheFile()
    {
        Assert.Contains("dataset.json: no such file", Assert.Throws<FileNotFoundException>(() => new MsdCorpus(Path.Combine(root, "nothing"))).Message);
        string bad = Msd("Task99_Bad", """{"training": [{"image": 3}]}""");
        Assert.Contains("training[0] must be", Assert.Throws<InvalidDataException>(() => new MsdCorpus(bad)).Message);
        string mismatched = Msd("Task98_Mismatch", Spleen);
        Nifti(Path.Combine(mismatched, "imagesTr", "spleen_2.nii.gz"), zeros(4, 5, 6), [1, 1, 1]);
        Nifti(Path.Combine(mismatched, "labelsTr", "spleen_2.nii.gz"), zeros(4, 5, 7, dtype: ScalarType.Byte), [1, 1, 1]);
        var corpus = new MsdCorpus(mismatched);
        var error = Assert.Throws<InvalidDataException>(() => corpus.Get(0));
        Assert.Contains("labelsTr/spleen_2.nii.gz: label grid [4,5,7] differs", error.Message);
        Assert.Throws<FileNotFoundException>(() => corpus.Get(1));  // listed but absent: the loader skips and counts it
    }

    [Fact]
    public void PetCtStudiesPairExposuresAndResampleTheCt()
    {
        string studies = Path.Combine(root, "studies");
        for (int s = 0; s < 3; s++)
        {
            string study = Path.Combine(studies, $"patient{s:D3}");
            Nifti(Path.Combine(study, "pet_60s.nii.gz"), full(4, 6, 6, 60f + s), [4, 4, 4]);
            Nifti(Path.Combine(study, "pet_90s.nii.gz"), full(4, 6, 6, 90f + s), [4, 4, 4]);
            if (s != 1) Nifti(Path.Combine(study, "ct.nii.gz"), full(8, 12, 12, -500f), [2, 2, 2]);  // same field of view, finer
        }
        var corpus = new PetCtCorpus(studies, withCt: true);
        Assert.Equal(2, corpus.Count);
        Assert.Contains(corpus.LeftOut, s => s.Contains("patient001") && s.Contains("no ct"));
        using var sample = corpus.Get(1);
        Assert.Equal([2L, 4, 6, 6], sample.Image.shape);
        Assert.Equal(62f, sample.Image[0].mean().item<float>());
        Assert.Equal(-500f, sample.Image[1].mean().item<float>(), 3);
        Assert.Equal(92f, sample.Target!.mean().item<float>());
        Assert.Equal(("pet", "3d"), (sample.Meta.Modality, sample.Meta.Dimensionality.Name));

        var without = new PetCtCorpus(studies, inputSeconds: 60, targetSeconds: 90);
        Assert.Equal(3, without.Count);
        Assert.Contains("no study folder holds pet_30s", Assert.Throws<InvalidDataException>(() => new PetCtCorpus(studies, inputSeconds: 30)).Message);
    }

    [Fact]
    public void ACtOfAnotherFieldOfViewIsRefused()
    {
        string study = Path.Combine(root, "fov", "p");
        Nifti(Path.Combine(study, "pet_60s.nii.gz"), zeros(4, 6, 6), [4, 4, 4]);
        Nifti(Path.Combine(study, "pet_90s.nii.gz"), zeros(4, 6, 6), [4, 4, 4]);
        Nifti(Path.Combine(study, "ct.nii.gz"), zeros(8, 12, 12), [1, 1, 1]);
        var corpus = new PetCtCorpus(Path.Combine(root, "fov"), withCt: true);
        Assert.Contains("register the CT to the PET first", Assert.Throws<InvalidDataException>(() => corpus.Get(0)).Message);
    }
}
