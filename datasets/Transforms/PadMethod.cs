namespace Medformer.Datasets.Transforms;

/// <summary>Where padding goes (MONAI's <c>method</c>): split evenly, the odd pixel after, or all after the image.</summary>
public enum PadMethod
{
    Symmetric,
    End,
}
