// Peak-memory probe for the GPU benchmarks. TorchSharp exposes none of the CUDA caching allocator's
// statistics (torch.cuda.max_memory_allocated has no binding), and peak allocated bytes are what the
// reference figures report. This shim is compiled on the GPU host against the host's libtorch headers
// (test/Liger.Benchmarks/gpu-run.sh) and loaded by Gpu/CudaMemoryStats.cs; nothing else uses it.
#include <c10/cuda/CUDACachingAllocator.h>
#include <cstdint>

using c10::cuda::CUDACachingAllocator::getDeviceStats;
using c10::cuda::CUDACachingAllocator::resetPeakStats;

extern "C" {
// Bytes currently allocated to tensors on the device (aggregate over pools).
int64_t liger_cuda_allocated(int device) { return getDeviceStats(device).allocated_bytes[0].current; }
// Highest allocated bytes since the last reset.
int64_t liger_cuda_peak_allocated(int device) { return getDeviceStats(device).allocated_bytes[0].peak; }
void liger_cuda_reset_peak(int device) { resetPeakStats(device); }
}
