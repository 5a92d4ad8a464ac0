"""Data the stack will not delete: protected and retained resources, the delete lock, and the
refusal of a setting change that would replace a data resource (infra/protection.py)."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from infra.protection import (
    DATA_IDENTITY_KEYS,
    data_identity,
    data_identity_changes,
    identity_from_outputs,
)
from infra.stack_config import StackConfigError
from shared.storage.containers import ContainerSpec, container_specs
from tests.infra.support import (
    FULL_CONFIG,
    STACK_REFERENCE,
    Deployment,
    RecordingMocks,
    make_config,
    run_main,
)

# The resources that hold users' data, or whose loss would delete it, by logical name.
DATA_RESOURCES = {
    "parley-rg",
    "parley-cosmos",
    "parley-db",
    "parley-container-Conversations",
    "parley-container-ConversationsArchive",
    "parley-container-Shares",
    "parley-container-GroupChatHistory",
    "parley-cosmos-delete-lock",
}


def test_the_data_resources_are_protected_and_retained(deployment: Deployment) -> None:
    options = deployment.options
    assert set(options) >= DATA_RESOURCES
    for name in DATA_RESOURCES:
        assert options[name].protect is True, name
        assert options[name].retain_on_delete is True, name
    # Only those: the app, its storage, telemetry and the model stay freely replaceable.
    protected = {name for name, opts in options.items() if opts.protect}
    assert protected == DATA_RESOURCES
    retained = {name for name, opts in options.items() if opts.retain_on_delete}
    assert retained == DATA_RESOURCES


def test_the_account_carries_a_delete_lock(deployment: Deployment) -> None:
    account = deployment.one("cosmosdb:DatabaseAccount")
    lock = deployment.one("authorization:ManagementLockByScope")
    assert lock.inputs["scope"] == account.id
    assert lock.inputs["level"] == "CanNotDelete"
    assert lock.inputs["lockName"] == "parley-cosmos-delete-lock"
    assert "docs/deploy.md" in lock.inputs["notes"]
    # Without it a lock does not stop a client holding account keys (Azure's resource-locks
    # page for Cosmos DB); the account has no keys either.
    assert account.inputs["disableKeyBasedMetadataWriteAccess"] is True
    assert account.inputs["disableLocalAuth"] is True


def test_the_stack_records_the_data_identity(deployment: Deployment) -> None:
    recorded = deployment.outputs["dataIdentity"]
    assert recorded == data_identity(deployment.cfg, container_specs())
    assert recorded == {
        "namePrefix": "parley",
        "location": "westeurope",
        "resourceGroupName": "rg-parley-test",
        "cosmosDatabase": "chat",
        "containers": "Conversations:/EmailID,ConversationsArchive:/EmailID",
        "sharesContainer": "Shares:/shareId",
        "groupsContainer": "GroupChatHistory:/groupId",
    }
    assert set(recorded) == set(DATA_IDENTITY_KEYS)


def _up(monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str]) -> dict[str, Any]:
    config = {f"parley:{k}": v for k, v in {**FULL_CONFIG, **overrides}.items()}
    pulumi.runtime.set_all_config(config, secret_keys=["parley:logHashSalt"])
    try:
        return run_main(monkeypatch)
    finally:
        pulumi.runtime.set_all_config({})


def _azure_resources(mocks: RecordingMocks) -> list[str]:
    return [r.logical_name for r in mocks.resources if r.type != STACK_REFERENCE]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("namePrefix", "chat"),
        ("location", "northeurope"),
        ("resourceGroupName", "rg-elsewhere"),
        ("cosmosDatabase", "conversations"),
    ],
)
def test_a_setting_that_would_replace_data_is_refused_once_deployed(
    pulumi_mocks: RecordingMocks,
    monkeypatch: pytest.MonkeyPatch,
    deployment: Deployment,
    key: str,
    value: str,
) -> None:
    pulumi_mocks.deployed_outputs = dict(deployment.outputs)
    with pytest.raises(StackConfigError) as refused:
        _up(monkeypatch, {key: value})
    by_key = {p.split(":")[1]: p for p in refused.value.problems}
    # The prefix is part of the default resource group name too: both are named.
    assert set(by_key) == ({key, "resourceGroupName"} if key == "namePrefix" else {key})
    problem = by_key[key]
    assert problem.startswith(f"parley:{key}: {value!r} differs from ")
    assert f"pulumi config set {key} {deployment.outputs['dataIdentity'][key]}" in problem
    assert "docs/deploy.md" in problem
    # Refused before anything was declared: nothing to create, replace or delete.
    assert _azure_resources(pulumi_mocks) == []


def test_every_changed_setting_is_named_at_once(
    pulumi_mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch, deployment: Deployment
) -> None:
    pulumi_mocks.deployed_outputs = dict(deployment.outputs)
    with pytest.raises(StackConfigError, match=r"2 problem\(s\)") as refused:
        _up(monkeypatch, {"location": "northeurope", "cosmosDatabase": "conversations"})
    assert [p.split(":")[1] for p in refused.value.problems] == ["location", "cosmosDatabase"]


def test_a_changed_partition_key_in_the_code_is_refused(
    pulumi_mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch, deployment: Deployment
) -> None:
    import infra.__main__ as program

    pulumi_mocks.deployed_outputs = dict(deployment.outputs)
    monkeypatch.setattr(
        program,
        "container_specs",
        lambda: (ContainerSpec("Conversations", "/userId"), ContainerSpec("ConversationsArchive")),
    )
    with pytest.raises(StackConfigError) as refused:
        _up(monkeypatch, {})
    (problem,) = refused.value.problems
    assert problem.startswith("containers (shared/storage/containers.py): ")
    assert "Conversations:/userId" in problem
    assert _azure_resources(pulumi_mocks) == []


def test_the_same_settings_deploy_and_other_settings_may_change(
    pulumi_mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch, deployment: Deployment
) -> None:
    pulumi_mocks.deployed_outputs = dict(deployment.outputs)
    outputs = _up(monkeypatch, {"maxMessageChars": "8000", "cosmosBackupTier": "Continuous30Days"})
    assert outputs["dataIdentity"] == deployment.outputs["dataIdentity"]
    assert "parley-cosmos" in _azure_resources(pulumi_mocks)
    # The reference is to this very stack, by its fully qualified name.
    (reference,) = [r for r in pulumi_mocks.resources if r.type == STACK_REFERENCE]
    assert reference.inputs["name"] == f"{pulumi.get_organization()}/parley/test"


def test_a_first_deployment_has_nothing_to_compare(
    pulumi_mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new stack (no outputs), or one last updated before it recorded its identity.
    pulumi_mocks.deployed_outputs = {"apiBaseUrl": "https://old.azurewebsites.net/api"}
    outputs = _up(monkeypatch, {"namePrefix": "chat"})
    assert outputs["dataIdentity"]["namePrefix"] == "chat"
    assert "chat-cosmos" in _azure_resources(pulumi_mocks)


def test_a_stack_deployed_before_the_record_is_guarded_by_its_older_outputs(
    pulumi_mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outputs every earlier version exported: the group's name, the account's name.
    pulumi_mocks.deployed_outputs = {
        "resourceGroupName": "rg-parley-test",
        "cosmosAccountName": "parley-cosmos-0a1b2c3d",
    }
    with pytest.raises(StackConfigError) as refused:
        _up(monkeypatch, {"namePrefix": "chat"})
    assert [p.split(":")[1] for p in refused.value.problems] == ["namePrefix", "resourceGroupName"]
    assert _azure_resources(pulumi_mocks) == []


def test_changes_are_compared_entry_by_entry() -> None:
    wanted = data_identity(make_config({"location": "northeurope"}), container_specs())
    assert data_identity_changes(None, wanted) == []
    assert data_identity_changes({}, wanted) == []
    # An entry an older record lacks is not compared; a differing one is named.
    assert data_identity_changes({"namePrefix": "parley"}, wanted) == []
    (problem,) = data_identity_changes({"location": "westeurope"}, wanted)
    assert problem.startswith("parley:location: 'northeurope' differs from 'westeurope'")


def test_the_identity_is_read_from_the_record_or_the_older_outputs() -> None:
    record = {"namePrefix": "parley", "location": "westeurope"}
    assert identity_from_outputs({"dataIdentity": record, "resourceGroupName": "x"}) == record
    assert identity_from_outputs(
        {"dataIdentity": None, "resourceGroupName": "rg-a", "cosmosAccountName": "ab-cosmos-12"}
    ) == {"resourceGroupName": "rg-a", "namePrefix": "ab"}
    assert identity_from_outputs({"dataIdentity": None, "resourceGroupName": None}) is None
    assert identity_from_outputs({}) is None
