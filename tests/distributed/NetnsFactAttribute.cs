using Xunit;

namespace Medformer.Tests.Distributed;

/// <summary>A fact that needs network namespaces (<see cref="TwoNodes"/>): root and iproute2's <c>ip</c>; skipped, saying
/// which is missing, otherwise (scripts/setup.sh test installs iproute2; CI runs as root).</summary>
public sealed class NetnsFactAttribute : FactAttribute
{
    public NetnsFactAttribute()
    {
        if (!Environment.IsPrivilegedProcess) Skip = "network namespaces need root (ip netns add)";
        else if (TwoNodes.Ip is null) Skip = "iproute2's ip is absent (apt-get install iproute2)";
    }
}
