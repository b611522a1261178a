"""A private Docker engine for tests: usm's lab engine (`usm.lab.dockerd`), skipped where dockerd is missing.

Images come from `docker import` of a busybox rootfs (there is no registry here): `busybox_image()`.
"""

from __future__ import annotations

from pathlib import Path

from usm.lab import dockerd as lab
from usm.lab.dockerd import BUSYBOX_APPLETS, busybox_image, busybox_rootfs, remove_tree

from . import need


class Dockerd(lab.Dockerd):
    """dockerd listening on `unix://<dir>/docker.sock` (short paths: containerd limits socket path length)."""

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ()):
        need("dockerd")
        super().__init__(workdir, extra_args)


__all__ = ["BUSYBOX_APPLETS", "Dockerd", "busybox_image", "busybox_rootfs", "remove_tree"]
