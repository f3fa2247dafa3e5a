using Medformer.Eval.Reports;
using Xunit;

namespace Medformer.Tests.Eval;

/// <summary>A report cell: mean ± sample std over its runs; one run says n=1 rather than a spread of zero.</summary>
public sealed class MeanStdTests
{
    [Fact]
    public void OneRunSaysSoAndSeveralShowTheirSpread()
    {
        Assert.Equal("80.6 (n=1)", MeanStd.Of([0.806]).Format());
        Assert.Equal("80.0 ± 1.4", MeanStd.Of([0.79, 0.81]).Format());
        Assert.Equal("–", MeanStd.Of([double.NaN]).Format());
    }
}
