using Microsoft.ML;
using Microsoft.ML.Liger;
using TorchSharp;

namespace Microsoft.ML.Liger.Tests;

[TestClass]
public sealed class LigerCatalogTests
{
    [TestMethod]
    public void Liger_OnNullContext_ThrowsNamingTheArgument()
    {
        var error = Assert.ThrowsExactly<ArgumentNullException>(() => LigerCatalogExtensions.Liger(null!));
        Assert.AreEqual("context", error.ParamName);
    }

    [TestMethod]
    public void Liger_ReturnsCatalogBoundToTheContext()
    {
        var context = new MLContext(seed: 1);
        Assert.AreSame(context, context.Liger().Context);
    }

    [TestMethod]
    public void Device_WithoutGpuId_IsCpu()
    {
        var context = new MLContext(seed: 1);
        Assert.AreEqual(DeviceType.CPU, context.Liger().Device.type);
        StringAssert.Contains(context.Liger().DescribeKernels(), "CPU");
    }

    [TestMethod]
    public void Device_WithMissingGpuAndNoFallback_Throws()
    {
        if (torch.cuda.is_available())
            return; // this host has a GPU: the case cannot arise for device 0
        var context = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => context.Liger().Device);
        StringAssert.Contains(error.Message, "GpuDeviceId");
    }

    [TestMethod]
    public void Device_WithMissingGpuAndFallback_IsCpu()
    {
        if (torch.cuda.is_available())
            return;
        var context = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = true };
        Assert.AreEqual(DeviceType.CPU, context.Liger().Device.type);
    }
}
