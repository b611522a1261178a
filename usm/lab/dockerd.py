"""A private Docker engine: dockerd on its own socket and directories, no bridge, no iptables.

Its containers run on the host's network or none (usm never creates bridge networks). There is
no registry here: images come from ``docker import`` of a busybox root filesystem
(:func:`busybox_image`).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Self

from usm.lab.process import Process, find_binary

BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "sleep", "httpd", "hostname", "ps", "yes", "dd", "head", "wc",
                   "kill", "true", "false", "env", "mkdir", "rm", "nc", "wget", "top", "seq")

MAX_SOCKET_PATH = 107 - len("/containerd/containerd-debug.sock")
"""The longest ``<dir>/x`` exec root whose containerd sockets still fit a Unix socket path (108 bytes)."""


class Dockerd(Process):
    """dockerd listening on ``unix://<dir>/docker.sock`` (short paths: containerd limits socket path length)."""

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ()):
        """``extra_args`` go to dockerd as they are, e.g. a second ``-H tcp://127.0.0.1:PORT`` with ``--tlsverify``."""
        self.root = Path(workdir)
        self.socket = self.root / "docker.sock"
        exec_root = self.root / "x"
        if len(str(exec_root.absolute())) > MAX_SOCKET_PATH:
            raise ValueError(f"{self.root} is too long a path for dockerd's sockets (containerd's must fit in 108 "
                             "bytes): use a shorter directory, e.g. under /tmp")
        argv = [find_binary("dockerd"), "--data-root", str(self.root / "data"), "--exec-root", str(exec_root),
                "-H", f"unix://{self.socket}", "--pidfile", str(self.root / "dockerd.pid"),
                "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false", *extra_args]
        super().__init__("dockerd", argv, self.root)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, ready=None, timeout: float = 60.0) -> Self:
        import docker

        def answers() -> bool:
            client = docker.DockerClient(base_url=self.url, timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()

        super().start(ready or answers, timeout)
        return self

    def client(self):
        """A Docker client straight to the engine's socket."""
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)


def busybox_rootfs() -> bytes:
    """A tar of a minimal root filesystem: the static busybox and its applets, nothing else."""
    busybox = find_binary("busybox")
    if "static" not in Path(busybox).resolve().name and not _is_static(busybox):
        raise RuntimeError(f"{busybox} is not statically linked; install the Debian package busybox-static")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
    return buffer.getvalue()


def _is_static(path: str) -> bool:
    with open(path, "rb") as binary:
        return b"/lib64/ld-linux" not in binary.read(1 << 16)


def busybox_image(client, repository: str = "usm-test/busybox", tag: str = "1") -> str:
    """Import the busybox rootfs as ``repository:tag`` (once per engine) and return the image name."""
    name = f"{repository}:{tag}"
    if not any(name in image.tags for image in client.images.list()):
        client.api.import_image_from_data(busybox_rootfs(), repository=repository, tag=tag,
                                          changes=['CMD ["/bin/sh"]', "ENV PATH=/bin"])
    return name


def unmount_under(path: Path) -> None:
    """Unmount what a stopped dockerd left mounted under ``path``: its overlay mounts go when it stops, but the
    bind mount of its network namespace (``<exec-root>/netns/default``) stays."""
    root = str(Path(path).resolve())
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p == root or p.startswith(root + "/")), reverse=True):
        subprocess.run(["umount", point], check=False, capture_output=True)  # not mounted any more: fine


def remove_tree(path: Path) -> None:
    """Remove a stopped dockerd's tree, unmounting first what is still mounted under it."""
    unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


__all__ = ["BUSYBOX_APPLETS", "Dockerd", "busybox_image", "busybox_rootfs", "remove_tree", "unmount_under"]
