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
                throw new ArgumentException($"--device '{spec}': CUDA is not available in this build or on this machine (build with -p:TorchBackend=cuda on " +
                    "a machine with an NVIDIA driver; see README, CUDA).");
            int count = torch.cuda.device_count();
            if (index >= count)
                throw new ArgumentException($"--device '{spec}': this machine has {count} CUDA device(s), numbered 0 to {count - 1}.");
            return new Device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"--device '{spec}': expected cpu, cuda or cuda:N.");
    }

    /// <summary>What a job runs on when it is not told: the CPU, as in PyTorch (a GPU is used when asked for).</summary>
    public const string DefaultSpec = "cpu";

    /// <summary>
    /// The one place a job's device is worked out: <paramref name="spec"/> (a --device flag, a run config's device)
    /// or, when none is given, <see cref="DefaultSpec"/>; in a data-parallel process (<paramref name="localRank"/>
    /// set) a bare "cuda" is its local rank's GPU, as torchrun users expect.
    /// </summary>
    public static Device Resolve(string? spec, int? localRank = null)
    {
        string s = string.IsNullOrWhiteSpace(spec) ? DefaultSpec : spec;
        if (localRank is { } rank && s.Trim().Equals("cuda", StringComparison.OrdinalIgnoreCase)) s = $"cuda:{rank}";
        return Parse(s);
    }
}
