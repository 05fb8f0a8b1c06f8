using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>User-given ids in Generate: checked on the host before the embedding lookup, naming the argument.</summary>
[TestClass]
public sealed class GenerationIdTests
{
    [TestMethod]
    [DataRow(0L, 2L, TinyModels.Vocab)] // the first id past the vocabulary
    [DataRow(1L, 0L, -1L)]
    [DataRow(1L, 3L, 2147483647L)]
    public void IdOutsideTheVocabulary_IsNamedWithItsPosition(long row, long column, long id)
    {
        using var model = new CausalLM(TinyModels.All["llama3"], new CausalLMOptions { Kernels = LigerKernelOptions.None });
        long vocab = model.Config.VocabSize;
        var ids = randint(0, vocab, [2, 5], dtype: ScalarType.Int64);
        ids[row, column] = tensor(id);

        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.Generate(ids, options: new GenerationOptions { MaxNewTokens = 2 }));

        Assert.AreEqual("inputIds", error.ParamName);
        StringAssert.Contains(error.Message, $"id {id} at [{row}, {column}]");
        StringAssert.Contains(error.Message, $"vocab_size {vocab}");
    }

    [TestMethod]
    public void PadTokenIdOutsideTheVocabulary_IsNamed()
    {
        using var model = new CausalLM(TinyModels.All["llama3"], new CausalLMOptions { Kernels = LigerKernelOptions.None });
        var ids = randint(0, model.Config.VocabSize, [2, 3], dtype: ScalarType.Int64);

        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            model.Generate(ids, options: new GenerationOptions { MaxNewTokens = 2, PadTokenId = -5, StopTokenIds = [1] }));

        Assert.AreEqual(nameof(GenerationOptions.PadTokenId), error.ParamName);
    }
}
