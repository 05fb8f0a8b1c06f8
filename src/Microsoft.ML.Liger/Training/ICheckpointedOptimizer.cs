using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>What the training loop asks of its optimizer: a step, and its state in and out of a checkpoint folder.</summary>
internal interface ICheckpointedOptimizer : IDisposable
{
    /// <summary>
    /// Clips the gradients' global norm to <paramref name="maxNorm"/> (0: no clipping), steps at <paramref name="learningRate"/>
    /// and clears the gradients. Returns the norm before clipping, on the device. When <paramref name="proceed"/> is given it
    /// sees the norm first, and when it says false nothing is updated (weights, masters and AdamW's state stay as they were)
    /// and the gradients are cleared: a skipped step. It must answer alike on every rank.
    /// </summary>
    Tensor Step(double learningRate, double maxNorm, Func<Tensor, bool>? proceed = null);

    /// <summary>Writes the state this process holds into checkpoint folder <paramref name="folder"/>.</summary>
    void Save(string folder);

    /// <summary>Restores the state <see cref="Save"/> wrote into <paramref name="folder"/>.</summary>
    void Load(string folder);
}
