"""The simulated world's containers in name order, kept up to date as they come, run and go.

The world's views (the engine's inventory, placement's cluster, the routing and the samples) all list containers
by name, and the world changes a few containers at a time: sorting a thousand names at every change cost more
than everything else the world does in a tick. A :class:`Roster` keeps the sorted lists by bisection instead, with
columns aligned with them (service and host numbers, what placement was last told of each container), and counts
each service's replicas on the way.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray


class _Named(Protocol):
    @property
    def name(self) -> str: ...


Item = TypeVar("Item", bound=_Named)


class Roster(Generic[Item]):
    """Containers (running or starting) and the running ones, each in name order; per service, the number of
    containers and a version that changes whenever its running containers do. Names are unique.

    ``told`` and ``told_cpu`` hold, per container, what placement was last told about it and the cpu demand that
    said (``None`` and nan: nothing yet, or it has started running since, so it must be told again); the world
    sets them."""

    def __init__(self, services: int) -> None:
        self._names: list[str] = []
        self._running_names: list[str] = []
        self.containers: list[Item] = []  # running or starting, by name
        self.service: NDArray[np.int64] = np.zeros(0, dtype=np.int64)  # service number of each container
        self.is_running: NDArray[np.bool_] = np.zeros(0, dtype=np.bool_)
        self.told: list[Any] = []
        self.told_cpu: NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        self.running: list[Item] = []  # running, by name
        self.running_service: NDArray[np.int64] = np.zeros(0, dtype=np.int64)  # service number of each running one
        self.running_host: NDArray[np.int64] = np.zeros(0, dtype=np.int64)  # host number of each running one
        self.replicas = [0] * services  # per service number: its containers, running or starting
        self.versions = [0] * services  # per service number: changes whenever its running containers change

    def add(self, item: Item, service: int) -> None:
        """A new container (starting, or running once ``run`` is called)."""
        position = bisect_left(self._names, item.name)
        if position < len(self._names) and self._names[position] == item.name:
            raise ValueError(f"container {item.name} is already on the roster")
        self._names.insert(position, item.name)
        self.containers.insert(position, item)
        self.service = _inserted(self.service, position, service)
        self.is_running = _inserted(self.is_running, position, False)
        self.told.insert(position, None)
        self.told_cpu = _inserted(self.told_cpu, position, np.nan)
        self.replicas[service] += 1

    def run(self, item: Item, service: int, host: int) -> None:
        """A container on the roster is now running."""
        position = self._position(item)
        self.is_running[position] = True
        self.told[position], self.told_cpu[position] = None, np.nan
        position = bisect_left(self._running_names, item.name)
        self._running_names.insert(position, item.name)
        self.running.insert(position, item)
        self.running_service = _inserted(self.running_service, position, service)
        self.running_host = _inserted(self.running_host, position, host)
        self.versions[service] += 1

    def remove(self, item: Item, service: int) -> None:
        """A container is gone (whether it ran or not)."""
        position = self._position(item)
        del self._names[position]
        del self.containers[position]
        del self.told[position]
        self.service = _deleted(self.service, position)
        self.is_running = _deleted(self.is_running, position)
        self.told_cpu = _deleted(self.told_cpu, position)
        self.replicas[service] -= 1
        position = bisect_left(self._running_names, item.name)
        if position < len(self._running_names) and self._running_names[position] == item.name:
            del self._running_names[position]
            del self.running[position]
            self.running_service = _deleted(self.running_service, position)
            self.running_host = _deleted(self.running_host, position)
            self.versions[service] += 1

    def running_names(self) -> list[str]:
        """The names of ``running``, in order (a copy)."""
        return list(self._running_names)

    def running_positions(self) -> NDArray[np.int64]:
        """Per container, its index in ``running`` (-1: starting). Both lists are in name order, so the k-th
        running container of ``containers`` is ``running[k]``."""
        return np.where(self.is_running, np.cumsum(self.is_running) - 1, -1)

    def _position(self, item: Item) -> int:
        position = bisect_left(self._names, item.name)
        if position == len(self._names) or self._names[position] != item.name:
            raise KeyError(f"container {item.name} is not on the roster")
        return position


def _inserted(array: NDArray[Any], position: int, value: Any) -> NDArray[Any]:
    """``np.insert`` of one value, without its generality (which costs ten times the copy here)."""
    return np.concatenate((array[:position], np.array([value], dtype=array.dtype), array[position:]))


def _deleted(array: NDArray[Any], position: int) -> NDArray[Any]:
    """``np.delete`` of one position, likewise."""
    return np.concatenate((array[:position], array[position + 1:]))
