using Medformer.Runtime;
using TorchSharp;
using Xunit;

namespace Medformer.Tests.Runtime;

public sealed class DeviceSpecTests
{
    [Theory]
    [InlineData("cpu")]
    [InlineData(" CPU ")]
    public void ParsesCpu(string spec) => Assert.Equal(DeviceType.CPU, DeviceSpec.Parse(spec).type);

    [Theory]
    [InlineData("gpu", "expected cpu, cuda or cuda:N")]
    [InlineData("cuda:x", "non-negative integer")]
    [InlineData("cuda:-1", "non-negative integer")]
    public void RefusesMalformedSpecs(string spec, string fault)
    {
        var e = Assert.Throws<ArgumentException>(() => DeviceSpec.Parse(spec));
        Assert.Contains("--device", e.Message);
        Assert.Contains(fault, e.Message);
    }

    [Fact]
    public void CudaWithoutCudaIsAClearError()
    {
        if (torch.cuda.is_available())
        {
            var e = Assert.Throws<ArgumentException>(() => DeviceSpec.Parse($"cuda:{torch.cuda.device_count()}"));
            Assert.Contains("CUDA device(s)", e.Message);
        }
        else
        {
            var e = Assert.Throws<ArgumentException>(() => DeviceSpec.Parse("cuda:0"));
            Assert.Contains("CUDA is not available", e.Message);
        }
    }

    [Fact]
    public void NoSpecIsTheCpuAndABareCudaInADataParallelProcessIsItsLocalGpu()
    {
        Assert.Equal("cpu", DeviceSpec.DefaultSpec);
        Assert.Equal(DeviceType.CPU, DeviceSpec.Resolve(null).type);
        Assert.Equal(DeviceType.CPU, DeviceSpec.Resolve("", localRank: 1).type);
        Assert.Equal(DeviceType.CPU, DeviceSpec.Resolve("cpu", localRank: 1).type);
        // Without CUDA the local rank's GPU is named in the refusal; with it, it is the device.
        if (torch.cuda.is_available() && torch.cuda.device_count() > 1)
            Assert.Equal(1, DeviceSpec.Resolve("cuda", localRank: 1).index);
        else if (!torch.cuda.is_available())
            Assert.Contains("--device 'cuda:1'", Assert.Throws<ArgumentException>(() => DeviceSpec.Resolve("cuda", localRank: 1)).Message);
    }
}
