using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

public sealed partial class CausalLM
{
    /// <summary>
    /// A copy of this model's current weights and buffers, on the same device and dtype, in eval mode, with no
    /// parameter that takes a gradient: a frozen reference model (DPO, KTO) that the optimizer never sees.
    /// </summary>
    internal CausalLM FrozenCopy()
    {
        var copy = new CausalLM(Config, Options, initialize: false);
        try
        {
            using (no_grad())
            {
                var parameters = named_parameters().ToDictionary(p => p.name, p => p.parameter);
                foreach (var (name, parameter) in copy.named_parameters())
                {
                    parameter.copy_(parameters[name]);
                    parameter.requires_grad = false;
                }
                var buffers = named_buffers().ToDictionary(b => b.name, b => b.buffer);
                foreach (var (name, buffer) in copy.named_buffers())
                    buffer.copy_(buffers[name]);
            }
            copy.eval();
            return copy;
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    /// <summary>Makes every parameter gradient-free and puts the model in eval mode (a reference loaded from a folder).</summary>
    internal CausalLM Frozen()
    {
        foreach (var parameter in parameters())
            parameter.requires_grad = false;
        eval();
        return this;
    }
}
