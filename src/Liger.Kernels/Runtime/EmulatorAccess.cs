using System.Runtime.CompilerServices;

// ILGPU's CPU accelerator (the emulator) runs a kernel through a task type it emits into a dynamic assembly
// named ILGPURuntime; that type holds the kernel's parameters, so it must see the internal kernel types
// (RopeLayout, CrossEntropySettings, Float8, BFloat16x8). Without this, loading such a kernel on the emulator
// fails with "Access is denied: 'Liger.Kernels.Kernels.RopeLayout'". The CUDA backend needs nothing: PTX
// has no .NET visibility.
[assembly: InternalsVisibleTo("ILGPURuntime")]
