"""Where sweep jobs run: in this process (default) or on a Ray cluster.

An executor has one method, ``map(fn, jobs) -> list`` (results in job order). ``fn`` must be a
module-level function so Ray workers can import it; jobs and results must be picklable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Executor(Protocol):
    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]: ...


class LocalExecutor:
    """Runs every job here, one after another."""

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
        return [fn(job) for job in jobs]

    def __repr__(self) -> str:
        return "LocalExecutor()"


class RayExecutor:
    """Runs every job as a Ray task (``task_cpus`` CPUs each) on the cluster at ``address``.

    ``address`` is what ``ray.init`` accepts: ``"auto"`` (a running local cluster), a
    ``"ray://host:port"`` client address, or ``"local"`` to start a private instance in this
    process (``init_kwargs`` such as ``num_cpus=1, include_dashboard=False`` go to ``ray.init``). If Ray is already initialized it is
    used as is. ``close()`` shuts down only an instance this executor started.
    """

    def __init__(self, address: str = "auto", *, task_cpus: float = 1, **init_kwargs: Any) -> None:
        try:
            import ray
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                "the Ray executor needs ray: pip install 'ray>=2.9' (or interp[distributed])"
            ) from error
        self._ray = ray
        self.address = address
        self.task_cpus = task_cpus
        self._owns = False
        if not ray.is_initialized():
            ray.init(address=None if address == "local" else address, **init_kwargs)
            self._owns = True

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
        remote = self._ray.remote(num_cpus=self.task_cpus)(fn)
        return self._ray.get([remote.remote(job) for job in jobs])

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r})"


def make_executor(address: str | None = None, **kwargs: Any) -> Executor:
    """``None`` -> :class:`LocalExecutor`; a Ray address (``"auto"``, ``"ray://..."``, ``"local"``) -> Ray."""
    if address is None:
        return LocalExecutor()
    if not isinstance(address, str) or not address:
        raise ValueError(
            f"address must be None (run here) or a Ray address string, got {address!r}"
        )
    return RayExecutor(address, **kwargs)
