"""The Kubernetes Pod Security Standards' "restricted" profile (baseline included), as a checker.

Written from the standard's page (kubernetes.io/docs/concepts/security/pod-security-standards,
the `latest` version): each control below is a row of its Baseline or Restricted table, with
the fields it reads and the values it allows. `violations(pod_spec)` says, in the words of the
Pod Security admission's messages, what a namespace labelled
`pod-security.kubernetes.io/enforce: restricted` would refuse of a pod; [] means it admits it.
Linux pods only (the Windows exemptions do not apply to raybake's images).
"""

from __future__ import annotations

from typing import Any

# Baseline, "Capabilities": what may be added at all; Restricted narrows it to NET_BIND_SERVICE.
RESTRICTED_CAPABILITIES = {"NET_BIND_SERVICE"}
# Restricted, "Volume Types": every other source (hostPath, nfs, iscsi, ...) is refused.
VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# Baseline, "Seccomp" / Restricted, "Seccomp (v1.19+)".
SECCOMP_ALLOWED = {"RuntimeDefault", "Localhost"}
# Baseline, "SELinux": the types a container may ask for; user and role may not be set.
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Baseline, "AppArmor".
APPARMOR_TYPES = {"RuntimeDefault", "Localhost"}
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
# Baseline, "Sysctls": the safe set.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container the standard looks at: init, regular and ephemeral."""
    return [*pod.get("initContainers", []), *pod.get("containers", []), *pod.get("ephemeralContainers", [])]


def violations(pod: dict[str, Any], annotations: dict[str, str] | None = None) -> list[str]:
    """What the restricted profile refuses in this pod spec (and its metadata's annotations)."""
    found: list[str] = []
    pod_ctx = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"host namespaces ({field}=true)")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if kinds - VOLUME_TYPES:
            found.append(f"restricted volume types (volume {volume.get('name')!r} uses {sorted(kinds)})")
    for sysctl in pod_ctx.get("sysctls", []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"forbidden sysctls ({sysctl.get('name')})")
    found += _os_controls("pod", pod_ctx)
    if pod_ctx.get("runAsUser") == 0:
        found.append("runAsUser=0 (pod must not set runAsUser=0)")
    for key, value in (annotations or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            found.append(f"forbidden AppArmor profile ({key}={value})")

    pod_non_root = pod_ctx.get("runAsNonRoot") is True
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_ALLOWED:
        found.append(f"seccompProfile (pod must not set securityContext.seccompProfile.type to {pod_seccomp!r})")
    for container in containers(pod):
        name = container.get("name", "?")
        ctx = container.get("securityContext") or {}
        where = f"container {name!r}"
        found += _os_controls(where, ctx)
        if ctx.get("privileged"):
            found.append(f"privileged ({where} must not set securityContext.privileged=true)")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                found.append(f"hostPort ({where} uses hostPort {port['hostPort']})")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(
                f"allowPrivilegeEscalation != false ({where} must set securityContext.allowPrivilegeEscalation=false)"
            )
        capabilities = ctx.get("capabilities") or {}
        if "ALL" not in capabilities.get("drop", []):
            found.append(f'unrestricted capabilities ({where} must set securityContext.capabilities.drop=["ALL"])')
        if added := set(capabilities.get("add", [])) - RESTRICTED_CAPABILITIES:
            found.append(f"unrestricted capabilities ({where} must not include {sorted(added)} in capabilities.add)")
        non_root = ctx.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            found.append(f"runAsNonRoot != true ({where} or the pod must set securityContext.runAsNonRoot=true)")
        if ctx.get("runAsUser") == 0:
            found.append(f"runAsUser=0 ({where} must not set runAsUser=0)")
        seccomp = (ctx.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in SECCOMP_ALLOWED:
            found.append(f"seccompProfile ({where} must not set securityContext.seccompProfile.type to {seccomp!r})")
        if seccomp is None and pod_seccomp is None:
            found.append(
                f"seccompProfile ({where} or the pod must set seccompProfile.type to RuntimeDefault or Localhost)"
            )
    return found


def _os_controls(where: str, ctx: dict[str, Any]) -> list[str]:
    """The baseline controls that read the same fields at pod and container level."""
    found = []
    if (ctx.get("windowsOptions") or {}).get("hostProcess"):
        found.append(f"hostProcess ({where} must not set windowsOptions.hostProcess=true)")
    selinux = ctx.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        found.append(f"seLinuxOptions ({where} sets a forbidden SELinux type, user or role)")
    if ctx.get("procMount", "Default") != "Default":
        found.append(f"procMount ({where} must not set procMount={ctx['procMount']})")
    apparmor = (ctx.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in APPARMOR_TYPES:
        found.append(f"forbidden AppArmor profile ({where} sets appArmorProfile.type={apparmor})")
    return found
