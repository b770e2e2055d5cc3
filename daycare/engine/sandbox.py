"""Sandboxes for managed processes: a small port, bubblewrap behind it, and an explicit "none".

A `SandboxPolicy` says what a process may touch: the whole filesystem read-only, except the
hidden folders (the OS home and the engine's data folder), where only the working dir and the
read dirs show through; the write dirs read-write; credential paths always hidden; the network
limited to the allowed domains. `BubblewrapSandbox` enforces it with `bwrap` and refuses what
it cannot enforce (a domain allowlist needs a filtering proxy, which this package does not
have). `NoSandbox` runs the command as it is, and is only used when the settings say
`sandbox: "none"`: a missing `bwrap` is an error, never a reason to run unsandboxed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SANDBOX_SETTINGS = ("bubblewrap", "none")
# Where a sandbox argv takes the number of the pipe the sandbox reports its child's pid on.
INFO_FD = "{info-fd}"

# Credentials and secrets: hidden even inside a folder the process may read or write.
_HOME_SECRETS = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".kube",
    ".docker",
    ".config/gcloud",
    ".config/gh",
    ".config/op",
    ".config/1Password",
    ".local/share/keyrings",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".git-credentials",
)
_SYSTEM_SECRETS = ("/etc/ssh", "/etc/sudoers", "/etc/sudoers.d", "/etc/shadow", "/etc/gshadow", "/etc/ssl/private")
_LINUX_SECRETS = ("/root/.ssh",)

PACKAGE_MANAGER_DOMAINS: Mapping[str, tuple[str, ...]] = {
    "dart": ("pub.dev", "storage.googleapis.com"),
    "dotnet": ("nuget.org", "api.nuget.org", "globalcdn.nuget.org"),
    "go": ("proxy.golang.org", "sum.golang.org", "index.golang.org", "golang.org"),
    "java": ("repo.maven.apache.org", "repo1.maven.org", "plugins.gradle.org", "services.gradle.org"),
    # The node preset covers npm, pnpm, yarn and bun.
    "node": ("registry.npmjs.org", "registry.yarnpkg.com", "repo.yarnpkg.com", "bun.sh"),
    "php": ("packagist.org", "repo.packagist.org"),
    "python": ("pypi.org", "files.pythonhosted.org", "pypi.python.org"),
    "ruby": ("rubygems.org",),
    "rust": ("crates.io", "index.crates.io", "static.crates.io"),
}


class SandboxError(Exception):
    """A process cannot be sandboxed as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """What a sandboxed process may reach; paths are absolute."""

    working_dir: str
    read_dirs: tuple[str, ...]
    write_dirs: tuple[str, ...]
    hidden_dirs: tuple[str, ...]
    secret_paths: tuple[str, ...]
    allowed_domains: tuple[str, ...]
    allow_local_binding: bool


@dataclass(frozen=True, slots=True)
class SandboxCommand:
    """The argv that runs a command in a sandbox; `reports_pid`: it holds INFO_FD and reports the pid to supervise."""

    argv: tuple[str, ...]
    reports_pid: bool = False


class Sandbox(Protocol):
    """Runs a shell command under a policy: checks the policy first, then builds the argv."""

    @property
    def name(self) -> str: ...

    def check(self, policy: SandboxPolicy) -> None:
        """Raises SandboxError when this sandbox cannot enforce the policy or cannot run here."""

    def settings(self, policy: SandboxPolicy) -> dict[str, Any]:
        """The policy as it is written to the process's sandbox.json."""

    def command(self, policy: SandboxPolicy, command: str, cwd: str) -> SandboxCommand:
        """The argv that runs `command` with `/bin/sh -c` in `cwd` under the policy."""


def secret_paths(home: str | None = None) -> tuple[str, ...]:
    """The credential paths hidden from every sandboxed process (of the OS user's home and the system)."""
    base = Path(home or Path.home())
    return _dedupe([*(str(base / entry) for entry in _HOME_SECRETS), *_SYSTEM_SECRETS, *_LINUX_SECRETS])


def allowed_domains_resolve(allowed_domains: Sequence[str] | None, package_managers: Sequence[str]) -> list[str]:
    """The explicit domains (trimmed, non-blank) then the package managers' registries, without duplicates."""
    domains: list[str] = []
    for entry in allowed_domains or ():
        trimmed = entry.strip()
        if not trimmed:
            raise ValueError("allowedDomains entries cannot be blank.")
        domains.append(trimmed)
    for manager in package_managers:
        domains.extend(PACKAGE_MANAGER_DOMAINS[manager])
    return list(dict.fromkeys(domains))


def allowed_domains_issues(allowed_domains: Sequence[str]) -> list[str]:
    """What is wrong with a resolved allowlist (a bare wildcard opens the whole network)."""
    return ['Wildcard "*" is not allowed in allowedDomains.'] if "*" in allowed_domains else []


def policy_settings(policy: SandboxPolicy) -> dict[str, Any]:
    """The sandbox.json body for a policy: the filesystem and network policy, in the legacy key names."""
    network: dict[str, Any] = {"allowedDomains": list(policy.allowed_domains), "deniedDomains": []}
    if policy.allow_local_binding:
        network["allowLocalBinding"] = True
    return {
        "filesystem": {
            "denyRead": [*policy.hidden_dirs, *policy.secret_paths],
            "allowRead": [policy.working_dir, *policy.read_dirs],
            "allowWrite": list(policy.write_dirs),
            "denyWrite": list(policy.secret_paths),
        },
        "network": network,
    }


class NoSandbox:
    """No isolation: the command runs with the engine's rights. Only for the explicit setting `sandbox: "none"`."""

    name = "none"

    def check(self, policy: SandboxPolicy) -> None:
        return None

    def settings(self, policy: SandboxPolicy) -> dict[str, Any]:
        return {"sandbox": self.name, **policy_settings(policy)}

    def command(self, policy: SandboxPolicy, command: str, cwd: str) -> SandboxCommand:
        return SandboxCommand(("/bin/sh", "-c", command))


def container_detect() -> bool:
    """Whether the engine runs inside a container (Docker, containerd, Kubernetes, Podman)."""
    if os.path.exists("/.dockerenv"):
        return True
    try:
        with open("/proc/1/cgroup", encoding="utf-8") as cgroup:
            return re.search(r"docker|containerd|kubepods|podman", cgroup.read(), re.IGNORECASE) is not None
    except OSError:
        return False


class BubblewrapSandbox:
    """Linux namespaces through `bwrap`: read-only root, bound write dirs, hidden folders, no network.

    The command runs in new mount, pid, IPC and network namespaces and in a session of its own,
    whose leader bwrap reports as the pid to supervise (a signal to its group reaches all of it).
    There is no --die-with-parent: the launcher that starts bwrap exits at once. Inside a
    container (`weaker_nested`, detected by default) /proc comes from the host and there is no
    pid namespace, since a fresh nested /proc is usually refused there. A port the process binds
    (`allowLocalBinding`) is reachable only inside its own network namespace.
    """

    name = "bubblewrap"

    def __init__(
        self,
        executable: str | None = None,
        *,
        weaker_nested: bool | None = None,
        detect_container: Callable[[], bool] = container_detect,
    ) -> None:
        self._executable = executable
        self._weaker_nested = weaker_nested
        self._detect_container = detect_container

    @property
    def weaker_nested(self) -> bool:
        if self._weaker_nested is None:
            self._weaker_nested = self._detect_container()
        return self._weaker_nested

    def executable(self) -> str:
        """The bwrap binary; raises SandboxError when it is not installed."""
        found = self._executable or shutil.which("bwrap")
        if not found or not os.access(found, os.X_OK):
            raise SandboxError(
                "The bubblewrap sandbox needs bwrap, which is not installed: install the bubblewrap package, "
                'or set sandbox to "none" to run processes without a sandbox.'
            )
        return found

    def check(self, policy: SandboxPolicy) -> None:
        if policy.allowed_domains:
            raise SandboxError(
                "Allowed domains are not supported by the bubblewrap sandbox: it can only cut the network off "
                f"entirely (asked for: {', '.join(policy.allowed_domains)}). Start the process without "
                'allowedDomains or packageManagers, or set sandbox to "none".'
            )
        self.executable()

    def settings(self, policy: SandboxPolicy) -> dict[str, Any]:
        result = {"sandbox": self.name, **policy_settings(policy)}
        if self.weaker_nested:
            result["enableWeakerNestedSandbox"] = True
        return result

    def command(self, policy: SandboxPolicy, command: str, cwd: str) -> SandboxCommand:
        self.check(policy)
        argv = [self.executable(), "--new-session", "--info-fd", INFO_FD, "--unshare-ipc"]
        if not self.weaker_nested:
            argv.append("--unshare-pid")
        argv += ["--ro-bind", "/", "/", *_mounts(policy, self.weaker_nested)]
        # No domain is allowed (check() refused any): the process gets a network namespace of its own.
        argv += ["--unshare-net", "--chdir", cwd, "--", "/bin/sh", "-c", command]
        return SandboxCommand(tuple(argv), reports_pid=True)


def sandbox_from_setting(value: str) -> Sandbox:
    """The sandbox a settings value names: "bubblewrap" or "none" (running processes unsandboxed)."""
    if value == "bubblewrap":
        return BubblewrapSandbox()
    if value == "none":
        return NoSandbox()
    raise ValueError(f'Unknown sandbox "{value}": expected "bubblewrap" or "none".')


def _mounts(policy: SandboxPolicy, weaker_nested: bool) -> list[str]:
    """The bwrap mounts over the read-only root: the most specific path wins; secrets stay hidden everywhere."""
    writable = [_real(path) for path in policy.write_dirs if os.path.isdir(path)]
    readable = [
        path
        for path in (_real(entry) for entry in (policy.working_dir, *policy.read_dirs) if os.path.isdir(entry))
        # The root is read-only already, and a read dir inside a write dir stays writable.
        if path != "/" and not any(_within(path, base) for base in writable)
    ]
    hidden = [_real(path) for path in policy.hidden_dirs if os.path.isdir(path)]
    # (depth, order at equal depth, path, kind): a folder is hidden before what shows through it is
    # bound, and /dev, /proc and a private /tmp come before anything bound inside them.
    system = {(2, 0, "/dev", "dev"), (2, 0, "/proc", "host-proc" if weaker_nested else "proc"), (2, 0, "/tmp", "tmp")}
    mounts = sorted(
        {
            *system,
            *((_depth(path), 1, path, "hide") for path in hidden),
            *((_depth(path), 2, path, "ro") for path in readable),
            *((_depth(path), 3, path, "rw") for path in writable),
        }
    )
    argv: list[str] = []
    masked: list[str] = []
    for _, _, path, kind in mounts:
        if kind in ("hide", "tmp"):
            argv += ["--tmpfs", path]
            masked += [path] if kind == "hide" else []
        elif kind in ("dev", "proc"):
            argv += [f"--{kind}", path]
        else:
            argv += ["--bind" if kind == "rw" else "--ro-bind", path, path]
    for path in _dedupe(policy.secret_paths):
        if os.path.isdir(path):
            argv += ["--tmpfs", path]
            masked.append(path)
        elif os.path.lexists(path):
            argv += ["--ro-bind", "/dev/null", path]
    # The masks are writable tmpfs until everything is mounted inside them; then they turn read-only.
    for path in masked:
        argv += ["--remount-ro", path]
    return argv


def _real(path: str) -> str:
    return os.path.realpath(path)


def _depth(path: str) -> int:
    return len(Path(path).parts)


def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _dedupe(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(os.path.abspath(value) for value in values if value.strip()))
