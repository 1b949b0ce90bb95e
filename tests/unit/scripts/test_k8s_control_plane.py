"""The control plane of `make k8s-test` listens on loopback only and authenticates by token.

Pure checks of what scripts/k8s_control_plane.py would run and write; starting it is
`make k8s-test`'s job (tests/k8s).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scripts import k8s_control_plane as cp


def layout(tmp_path: Path) -> cp.Layout:
    return cp.Layout(
        root=tmp_path,
        etcd_client_port=23790,
        etcd_peer_port=23800,
        apiserver_port=6443,
        kwok_port=10250,
    )


def test_every_listening_address_is_loopback(tmp_path: Path) -> None:
    commands = cp.commands(layout(tmp_path), "/usr/bin/etcd")
    assert set(commands) == set(cp.COMPONENTS)
    addresses = []
    for argv in commands.values():
        for arg in argv:
            if arg.startswith("--service-cluster-ip-range="):
                continue  # virtual Service addresses: nothing listens on them
            addresses += re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|localhost|0\.0\.0\.0|::", arg)
    assert len(addresses) >= 8, "too few addresses found: the check would prove nothing"
    assert set(addresses) == {"127.0.0.1"}, addresses
    assert "--bind-address=127.0.0.1" in commands["kube-apiserver"]
    # The controller manager and the scheduler serve no port at all.
    for component in ("kube-controller-manager", "kube-scheduler"):
        assert "--secure-port=0" in commands[component]
    assert "--server-address=127.0.0.1:10250" in commands["kwok"]
    # Anonymous requests are refused and RBAC decides.
    assert "--anonymous-auth=false" in commands["kube-apiserver"]
    assert "--authorization-mode=RBAC" in commands["kube-apiserver"]


def test_tokens_file_names_each_identity_once() -> None:
    tokens = {name: f"token-{name}" for name in cp.IDENTITIES}
    lines = cp.tokens_csv(tokens).splitlines()
    assert len(lines) == len(cp.IDENTITIES)
    by_user = {line.split(",")[1]: line for line in lines}
    assert by_user["magnetar-admin"] == 'token-admin,magnetar-admin,uid-admin,"system:masters"'
    # The scheduler gets only the roles bootstrap RBAC grants its user, not cluster admin.
    assert by_user["system:kube-scheduler"].endswith(',""')


def test_kubeconfig_trusts_the_served_certificate_and_sends_the_token() -> None:
    config = json.loads(cp.kubeconfig_yaml("https://127.0.0.1:6443", b"PEM", "u", "t0k"))
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert "insecure-skip-tls-verify" not in cluster
    assert config["users"][0]["user"] == {"token": "t0k"}
