"""`clawmesh up`'s embedded NATS users: generated once under the state dir, private, reused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from clawmesh.checks import default_checks
from clawmesh.cli._remote import nats_credentials
from clawmesh.config import Config, load_config
from clawmesh.natsauth import EMBEDDED_AUTH_DIR, NatsAuthError, embedded_admin, embedded_users, service_user


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_writes_private_files(tmp_path: Path) -> None:
    users = embedded_users(tmp_path)
    folder = tmp_path / EMBEDDED_AUTH_DIR
    assert mode(folder) == 0o700
    assert mode(folder / "users.json") == 0o600
    stored = json.loads((folder / "users.json").read_text())["users"]
    assert {u.name: u.password for u in users} == {n: v["password"] for n, v in stored.items()}
    assert {u.name for u in users} == {"ingress", "router", "runner", "node-local", "integration", "admin"}


def test_loose_modes_are_tightened(tmp_path: Path) -> None:
    embedded_users(tmp_path)
    folder = tmp_path / EMBEDDED_AUTH_DIR
    folder.chmod(0o755)
    (folder / "users.json").chmod(0o644)
    embedded_users(tmp_path)
    assert mode(folder) == 0o700 and mode(folder / "users.json") == 0o600


def test_restart_reuses_passwords_and_adds_new_nodes(tmp_path: Path) -> None:
    first = {u.name: u.password for u in embedded_users(tmp_path)}
    second = {u.name: u.password for u in embedded_users(tmp_path, nodes=["local", "sg-1"])}
    assert {n: second[n] for n in first} == first
    assert "node-sg-1" in second and second["node-sg-1"] not in first.values()
    # a node removed from the config keeps its stored password for when it comes back
    third = {u.name: u.password for u in embedded_users(tmp_path, nodes=["local"])}
    assert third == first
    assert embedded_admin(tmp_path) == ("cm-admin", first["admin"])


def test_permissions_come_from_code_not_the_file(tmp_path: Path) -> None:
    embedded_users(tmp_path)
    path = tmp_path / EMBEDDED_AUTH_DIR / "users.json"
    doc = json.loads(path.read_text())
    doc["users"]["integration"]["permissions"] = {"publish": {"allow": [">"]}}
    path.write_text(json.dumps(doc))
    integration = service_user(embedded_users(tmp_path), "integration")
    assert integration.publish_deny == [">"] and integration.publish == []


def test_malformed_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / EMBEDDED_AUTH_DIR
    folder.mkdir()
    (folder / "users.json").write_text('{"users": {"admin": {"user": "cm-admin"}}}')
    with pytest.raises(NatsAuthError, match=r"users\.json.*delete the file"):
        embedded_users(tmp_path)
    (folder / "users.json").write_text("{not json")
    with pytest.raises(NatsAuthError, match=r"users\.json"):
        embedded_admin(tmp_path)


def test_service_user_by_service_name(tmp_path: Path) -> None:
    users = embedded_users(tmp_path, nodes=["local", "sg-1"])
    assert service_user(users, "ingress").user == "cm-ingress"
    assert service_user(users, "node_agent").name == "node-local"
    assert service_user(users, "node_agent", node_id="sg-1").name == "node-sg-1"
    with pytest.raises(NatsAuthError, match="node-elsewhere"):
        service_user(users, "node_agent", node_id="elsewhere")


def test_no_admin_before_first_up(tmp_path: Path) -> None:
    assert embedded_admin(tmp_path) is None
    assert not (tmp_path / EMBEDDED_AUTH_DIR).exists()


def _config(tmp_path: Path, nats: dict[str, object] | None = None) -> Config:
    path = tmp_path / "clawmesh.json"
    path.write_text(json.dumps({"nats": nats} if nats else {}))
    return load_config(path, checks=default_checks(), env={"CLAWMESH_STATE_DIR": str(tmp_path / "state")})


def test_cli_uses_the_state_dirs_admin_for_a_local_server(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert nats_credentials(config, "nats://127.0.0.1:18790")["user"] is None
    users = {u.name: u for u in embedded_users(tmp_path / "state")}
    creds = nats_credentials(config, "nats://127.0.0.1:18790")
    assert (creds["user"], creds["password"]) == ("cm-admin", users["admin"].password)


def test_cli_never_sends_the_admin_password_elsewhere(tmp_path: Path) -> None:
    config = _config(tmp_path)
    embedded_users(tmp_path / "state")
    creds = nats_credentials(config, "nats://127.0.0.1:4222,nats://nats.example.com:4222")
    assert creds["user"] is None and creds["password"] is None


def test_cli_prefers_configured_credentials(tmp_path: Path) -> None:
    config = _config(tmp_path, {"user": "me", "password": "secret"})
    embedded_users(tmp_path / "state")
    creds = nats_credentials(config, "nats://127.0.0.1:4222")
    assert (creds["user"], creds["password"]) == ("me", "secret")
