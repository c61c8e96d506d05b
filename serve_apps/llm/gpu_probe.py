"""The mean NVML utilisation of the GPUs a replica holds (``nvidia-ml-py``), or None where no
device reports (a CPU node, no driver, no library): the GPU autoscaling signal then abstains."""

from __future__ import annotations

from typing import Optional, Sequence


def nvml_utilization(gpu_ids: Sequence[str]) -> Optional[float]:
    """Mean ``gpu`` utilisation (percent) of the devices ``gpu_ids`` (Ray's ids, NVML indexes)."""
    if not gpu_ids:
        return None
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded, or the package missing
        return None
    try:
        vals = []
        for gid in gpu_ids:
            h = pynvml.nvmlDeviceGetHandleByIndex(int(gid))
            vals.append(float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu))
        return sum(vals) / len(vals) if vals else None
    except Exception:  # a device gone or an id NVML does not know: no reading this time
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
