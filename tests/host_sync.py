"""Find host syncs without a GPU: run code on the ``meta`` device inside :func:`no_host_sync`.

On a GPU the host waits for the device whenever it reads a device value (``.item()``, ``bool(t)``,
``.cpu()``, ``.tolist()``), runs an op whose output size depends on device values (``nonzero``, boolean
masks) or copies host memory to the device with ``non_blocking=False`` (``.to(device)``,
``torch.tensor(..., device=d)``). Meta tensors have shapes but no values, so the same code runs on any
machine; ops pass through the dispatcher and tensors made from host data through torch's function
overrides, where these raise :class:`HostSync` naming the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
DATA_DEPENDENT = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
}
FROM_HOST_DATA = {torch.tensor, torch.as_tensor, torch.Tensor.new_tensor}


class HostSync(RuntimeError):
    """An op that makes the host wait for the device."""


def _on_device(value) -> bool:
    return isinstance(value, torch.Tensor) and value.device.type != "cpu"


def _crosses(a: torch.device | str, b: torch.device | str) -> bool:
    return (torch.device(a).type == "cpu") != (torch.device(b).type == "cpu")


class _Ops(TorchDispatchMode):
    """Reads of device values, data-dependent output sizes and blocking host <-> device copies."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        problem = _problem(func, args, kwargs)
        if problem:
            raise HostSync(f"{func}: {problem}")
        return func(*args, **kwargs)


def _problem(func, args, kwargs) -> str | None:
    """Why ``func(*args, **kwargs)`` makes the host wait for a device, or None."""
    on_device = [a for a in args if _on_device(a)]
    if func is aten._local_scalar_dense.default and on_device:
        return "a device value read on the host (.item(), bool(), float())"
    if func in DATA_DEPENDENT and on_device:
        return "an output size that depends on device values"
    if (
        func is aten.index.Tensor
        and on_device
        and any(i is not None and i.dtype == torch.bool for i in args[1])
    ):
        return "a boolean mask: an output size that depends on device values"
    if func is aten._to_copy.default and not kwargs.get("non_blocking", False):
        target = kwargs.get("device") or args[0].device
        if _crosses(args[0].device, target):
            return f"a blocking copy {args[0].device} -> {target}"
    if func is aten.copy_.default and not (args[2] if len(args) > 2 else kwargs.get("non_blocking", False)):
        if _crosses(args[0].device, args[1].device):
            return f"a blocking copy {args[1].device} -> {args[0].device}"
    return None


class _FromHostData(TorchFunctionMode):
    """Device tensors made from Python data: a blocking host-to-device copy (invisible to the dispatcher
    for meta tensors)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FROM_HOST_DATA and not (func is torch.as_tensor and isinstance(args[0], torch.Tensor)):
            like = args[0] if func is torch.Tensor.new_tensor else None
            device = kwargs.get("device") or (like.device if like is not None else "cpu")
            if torch.device(device).type != "cpu":
                raise HostSync(f"{func.__name__}(..., device={device}): host data copied to the device")
        return func(*args, **kwargs)


@contextmanager
def no_host_sync() -> Iterator[None]:
    """Raise :class:`HostSync` at the first call that would make the host wait for a (non-CPU) device."""
    with _FromHostData(), _Ops():
        yield
