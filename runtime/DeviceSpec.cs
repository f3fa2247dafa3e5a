using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>Parses and checks <c>--device cpu|cuda[:N]</c>, as PyTorch spells devices.</summary>
public static class DeviceSpec
{
    public static Device Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        TorchRuntime.EnsureLoaded();
        string s = spec.Trim().ToLowerInvariant();
        if (s == "cpu") return CPU;
        if (s == "cuda" || s.StartsWith("cuda:", StringComparison.Ordinal))
        {
            int index = 0;
            if (s.Length > 4 && (!int.TryParse(s.AsSpan(5), out index) || index < 0))
                throw new ArgumentException($"--device '{spec}': the CUDA index must be a non-negative integer, as in cuda:0.");
            if (!torch.cuda.is_available())
                throw new ArgumentException($"--device '{spec}': CUDA is not available in this build or on this machine (build with -p:TorchBackend=cuda on a machine with an NVIDIA driver; see README, CUDA).");
            int count = torch.cuda.device_count();
            if (index >= count)
                throw new ArgumentException($"--device '{spec}': this machine has {count} CUDA device(s), numbered 0 to {count - 1}.");
            return new Device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"--device '{spec}': expected cpu, cuda or cuda:N.");
    }

    /// <summary>The best device present: the first GPU when CUDA is available, else the CPU.</summary>
    public static Device Default()
    {
        TorchRuntime.EnsureLoaded();
        return torch.cuda.is_available() ? CUDA : CPU;
    }
}
