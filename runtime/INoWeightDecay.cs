namespace Medformer.Runtime;

/// <summary>
/// A module's own list of matrices that AdamW must not decay (timm's <c>no_weight_decay()</c>): learned latents and
/// queries, which are data, not weights. Names are relative to the module. Vectors (biases, norms) never decay and
/// need no listing (nanoGPT's rule: decay exactly the parameters of two or more dimensions).
/// </summary>
public interface INoWeightDecay
{
    IEnumerable<string> NoWeightDecay();
}
