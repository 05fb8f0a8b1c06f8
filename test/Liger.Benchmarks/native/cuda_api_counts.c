// Kernel-launch and host-synchronisation counter for the GPU benchmarks (issue 8: "launch counts per training step,
// host syncs per step"). TorchSharp exposes no profiler, and three launchers share the GPU: libtorch (CUDA runtime),
// cuBLAS (runtime, linked into it) and ILGPU (driver API, cuLaunchKernel). CUPTI's callback API sees all of them.
// A runtime call is carried out through driver calls, so a driver call is counted only when no runtime call is
// under way on that thread. Compiled on the GPU host by gpu-run.sh, loaded by Gpu/CudaApiCounts.cs; nothing else
// uses it.
#include <cuda_runtime_api.h>
#include <cupti.h>
#include <stdint.h>
#include <string.h>

enum { LAUNCHES, SYNCS, COPIES_TO_HOST, COUNTERS };

static volatile int64_t counts[COUNTERS];
static __thread int runtimeDepth;
static CUpti_SubscriberHandle subscriber;

static void bump(int which) { __atomic_add_fetch(&counts[which], 1, __ATOMIC_RELAXED); }

static void CUPTIAPI on_api(void* userdata, CUpti_CallbackDomain domain, CUpti_CallbackId id, const void* data)
{
    (void)userdata;
    const CUpti_CallbackData* call = (const CUpti_CallbackData*)data;
    if (domain == CUPTI_CB_DOMAIN_RUNTIME_API)
    {
        if (call->callbackSite == CUPTI_API_EXIT)
        {
            runtimeDepth--;
            return;
        }
        runtimeDepth++;
        switch (id)
        {
            case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000:
            case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_ptsz_v7000:
            case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_v11060:
            case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_ptsz_v11060:
            case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_v9000:
                bump(LAUNCHES);
                break;
            case CUPTI_RUNTIME_TRACE_CBID_cudaDeviceSynchronize_v3020:
            case CUPTI_RUNTIME_TRACE_CBID_cudaStreamSynchronize_v3020:
            case CUPTI_RUNTIME_TRACE_CBID_cudaEventSynchronize_v3020:
            case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpy_v3020:
                bump(SYNCS);
                break;
            case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyAsync_v3020:
            {
                const cudaMemcpyAsync_v3020_params* p = (const cudaMemcpyAsync_v3020_params*)call->functionParams;
                if (p->kind == cudaMemcpyDeviceToHost)
                    bump(COPIES_TO_HOST);
                break;
            }
            default:
                break;
        }
        return;
    }
    if (call->callbackSite != CUPTI_API_ENTER || runtimeDepth > 0)
        return;
    switch (id)
    {
        case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel:
        case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz:
        case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx:
        case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz:
            bump(LAUNCHES);
            break;
        case CUPTI_DRIVER_TRACE_CBID_cuCtxSynchronize:
        case CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize:
        case CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize_ptsz:
        case CUPTI_DRIVER_TRACE_CBID_cuEventSynchronize:
            bump(SYNCS);
            break;
        default:
            break;
    }
}

// Starts counting; 0 on success, else CUPTI's error code.
int liger_api_counts_start(void)
{
    CUptiResult r = cuptiSubscribe(&subscriber, (CUpti_CallbackFunc)on_api, NULL);
    if (r == CUPTI_SUCCESS)
        r = cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API);
    if (r == CUPTI_SUCCESS)
        r = cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_DRIVER_API);
    return (int)r;
}

// Copies the counters (launches, host synchronisations, device-to-host async copies) into out[0..2].
void liger_api_counts_read(int64_t* out)
{
    for (int i = 0; i < COUNTERS; i++)
        out[i] = __atomic_load_n(&counts[i], __ATOMIC_RELAXED);
}
