namespace Medformer.Tests.Tracking;

/// <summary>
/// The state dicts tests/reference/torch_state_dicts.py writes with Debian's PyTorch 1.13, made once per test class:
/// mixed.pt (float32, float16, bfloat16, int64, bool, views of one storage), legacy.pt (the same, pre-1.6 format),
/// parameter.pth (an nn.Parameter), lightning.ckpt (a Lightning checkpoint) and expected.safetensors (every tensor,
/// contiguous).
/// </summary>
public sealed class TorchStateDicts : IDisposable
{
    public string Folder { get; } = Directory.CreateTempSubdirectory("medformer-torch-state-dicts-").FullName;

    public TorchStateDicts()
    {
        var result = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "torch_state_dicts.py"), Folder]);
        if (result.ExitCode != 0) throw new InvalidOperationException("torch_state_dicts.py failed: " + result.Stderr);
    }

    public string this[string name] => Path.Combine(Folder, name);

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}
