"""Run the Pulumi program offline against recording mocks (``pulumi.runtime.set_mocks``).

The mocks record every resource the program registers, by type token, with its inputs exactly as
the engine would receive them (camelCase property names, outputs resolved). They answer with
plausible outputs: ARM ids, names, ``defaultHostName``, ``documentEndpoint``, the identity's
``clientId``/``principalId``, an Application Insights connection string and so on.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from infra.stack_config import StackConfig, parse_config  # noqa: E402

SUBSCRIPTION = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
TENANT = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
CLIENT_ID = "11111111-2222-4333-8444-555555555555"
_NS = uuid.UUID("0f3f9a52-3c4e-4f21-9a7e-2b1d6c5e4a30")

# A complete, valid configuration. Values differ from the defaults where that proves wiring.
FULL_CONFIG: dict[str, str] = {
    "location": "westeurope",
    "spaOrigins": '["https://chat.example.com", "http://localhost:5173"]',
    "alertEmail": "ops@example.com",
    "authClientId": CLIENT_ID,
    "authTenantId": TENANT,
    "openAiModel": "gpt-4.1-mini",
    "openAiModelVersion": "2025-04-14",
    "openAiApiVersion": "2025-04-01-preview",
    "openAiCapacity": "25",
    "instanceMemoryMB": "4096",
    "maximumInstanceCount": "60",
    "httpPerInstanceConcurrency": "24",
    "retentionDays": "365",
    "archiveTimeBudgetSeconds": "200",
    "maxMessageChars": "12000",
    "logHashSalt": "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
}
FUNCTION_TIMEOUT_S = 1800

# Where the mock reads a resource's Azure name from its inputs; otherwise a fixed per-type name.
_NAME_INPUT = {
    "azure-native:resources:ResourceGroup": "resourceGroupName",
    "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
    "azure-native:cosmosdb:DatabaseAccount": "accountName",
    "azure-native:cosmosdb:SqlResourceSqlDatabase": "databaseName",
    "azure-native:cosmosdb:SqlResourceSqlContainer": "containerName",
    "azure-native:cosmosdb:SqlResourceSqlRoleAssignment": "roleAssignmentId",
    "azure-native:cognitiveservices:Account": "accountName",
    "azure-native:cognitiveservices:Deployment": "deploymentName",
    "azure-native:operationalinsights:Workspace": "workspaceName",
    "azure-native:applicationinsights:Component": "resourceName",
    "azure-native:applicationinsights:Workbook": "resourceName",
    "azure-native:monitor:ActionGroup": "actionGroupName",
    "azure-native:monitor:ScheduledQueryRule": "ruleName",
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:storage:BlobContainer": "containerName",
    "azure-native:web:AppServicePlan": "name",
    "azure-native:web:WebApp": "name",
    "azure-native:authorization:RoleAssignment": "roleAssignmentName",
    "azure-native:authorization:ManagementLockByScope": "lockName",
    "azure-native:webpubsub:WebPubSub": "resourceName",
    "azure-native:webpubsub:WebPubSubHub": "hubName",
}
_FIXED_NAME = {
    "azure-native:web:WebAppAuthSettingsV2": "authsettingsV2",
    "azure-native:web:WebAppFtpAllowed": "ftp",
    "azure-native:web:WebAppScmAllowed": "scm",
}
# ARM id paths below /providers/, filled from the inputs (and {name}).
_ARM_PATH = {
    "azure-native:managedidentity:UserAssignedIdentity": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    ),
    "azure-native:cosmosdb:DatabaseAccount": "Microsoft.DocumentDB/databaseAccounts/{name}",
    "azure-native:cosmosdb:SqlResourceSqlDatabase": (
        "Microsoft.DocumentDB/databaseAccounts/{accountName}/sqlDatabases/{name}"
    ),
    "azure-native:cosmosdb:SqlResourceSqlContainer": (
        "Microsoft.DocumentDB/databaseAccounts/{accountName}/sqlDatabases/{databaseName}"
        "/containers/{name}"
    ),
    "azure-native:cosmosdb:SqlResourceSqlRoleAssignment": (
        "Microsoft.DocumentDB/databaseAccounts/{accountName}/sqlRoleAssignments/{name}"
    ),
    "azure-native:cognitiveservices:Account": "Microsoft.CognitiveServices/accounts/{name}",
    "azure-native:cognitiveservices:Deployment": (
        "Microsoft.CognitiveServices/accounts/{accountName}/deployments/{name}"
    ),
    "azure-native:operationalinsights:Workspace": "Microsoft.OperationalInsights/workspaces/{name}",
    "azure-native:applicationinsights:Component": "Microsoft.Insights/components/{name}",
    "azure-native:applicationinsights:Workbook": "Microsoft.Insights/workbooks/{name}",
    "azure-native:monitor:ActionGroup": "Microsoft.Insights/actionGroups/{name}",
    "azure-native:monitor:ScheduledQueryRule": "Microsoft.Insights/scheduledQueryRules/{name}",
    "azure-native:storage:StorageAccount": "Microsoft.Storage/storageAccounts/{name}",
    "azure-native:storage:BlobContainer": (
        "Microsoft.Storage/storageAccounts/{accountName}/blobServices/default/containers/{name}"
    ),
    "azure-native:web:AppServicePlan": "Microsoft.Web/serverfarms/{name}",
    "azure-native:webpubsub:WebPubSub": "Microsoft.SignalRService/webPubSub/{name}",
    "azure-native:webpubsub:WebPubSubHub": (
        "Microsoft.SignalRService/webPubSub/{resourceName}/hubs/{name}"
    ),
    "azure-native:web:WebApp": "Microsoft.Web/sites/{name}",
    "azure-native:web:WebAppAuthSettingsV2": "Microsoft.Web/sites/{name}/config/authsettingsV2",
    "azure-native:web:WebAppFtpAllowed": (
        "Microsoft.Web/sites/{name}/basicPublishingCredentialsPolicies/ftp"
    ),
    "azure-native:web:WebAppScmAllowed": (
        "Microsoft.Web/sites/{name}/basicPublishingCredentialsPolicies/scm"
    ),
}


RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
STACK_REFERENCE = "pulumi:pulumi:StackReference"


# How the mock monitor hands over a secret input value: {SECRET_SIG: SECRET_MARK, "value": ...}.
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def unwrap_secrets(value: Any, found: list[Any] | None = None) -> Any:
    """The value with every secret wrapper removed; each secret's plain value goes to ``found``."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            plain = unwrap_secrets(value.get("value"), found)
            if found is not None:
                found.append(plain)
            return plain
        return {k: unwrap_secrets(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v, found) for v in value]
    return value


# pulumi.runtime.test, typed: runs a test body and waits for every resource registration.
pulumi_test: Callable[[Callable[..., Any]], Callable[..., None]] = pulumi.runtime.test


@dataclass(frozen=True)
class Recorded:
    type: str
    logical_name: str
    id: str
    inputs: Mapping[str, Any]  # secrets unwrapped
    outputs: Mapping[str, Any]
    secret_inputs: tuple[str, ...]  # the top-level inputs that arrived marked secret


class RecordingMocks(pulumi.runtime.Mocks):
    """``deployed_outputs``: the stack outputs a stack reference reads (a deployed stack's)."""

    def __init__(self, deployed_outputs: Mapping[str, Any] | None = None) -> None:
        self.resources: list[Recorded] = []
        self.deployed_outputs = dict(deployed_outputs or {})

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        secret_inputs = tuple(
            k for k, v in args.inputs.items() if isinstance(v, dict) and SECRET_SIG in v
        )
        inputs = unwrap_secrets(dict(args.inputs))
        token = args.typ
        name = str(inputs.get(_NAME_INPUT.get(token, ""), "") or _FIXED_NAME.get(token, args.name))
        group = inputs.get("resourceGroupName", "rg-unknown")
        if token == STACK_REFERENCE:
            # Read, not created: its id is the referenced stack's name, as the engine answers.
            resource_id = str(args.resource_id)
        elif token == RANDOM_PASSWORD:
            # Not an Azure resource: the provider's id is the literal "none".
            resource_id = "none"
        elif token == "azure-native:resources:ResourceGroup":
            resource_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}"
        elif token == "azure-native:authorization:RoleAssignment":
            resource_id = (
                f"{inputs['scope']}/providers/Microsoft.Authorization/roleAssignments/{name}"
            )
        elif token == "azure-native:authorization:ManagementLockByScope":
            resource_id = f"{inputs['scope']}/providers/Microsoft.Authorization/locks/{name}"
        elif token in _ARM_PATH:
            # For the site's singletons (auth, ftp, scm) the "name" input is the site's name.
            fields = {**inputs, "name": inputs["name"] if token in _FIXED_NAME else name}
            path = _ARM_PATH[token].format(**fields)
            resource_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{path}"
        else:
            raise AssertionError(f"the mocks do not know resource type {token}")
        outputs: dict[str, Any] = {**inputs, "name": name, "id": resource_id}
        outputs.update(_extra_outputs(token, name, inputs))
        if token == STACK_REFERENCE:
            outputs = {
                "name": inputs["name"],
                "outputs": dict(self.deployed_outputs),
                "secretOutputNames": [],
            }
        self.resources.append(
            Recorded(token, args.name, resource_id, inputs, outputs, secret_inputs)
        )
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        # The program makes no provider calls (it derives the subscription from resource ids).
        raise AssertionError(f"unexpected provider call {args.token}")


def _guid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "|".join(parts)))


def _extra_outputs(token: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    if token == RANDOM_PASSWORD:
        # As the provider makes it: `length` characters of the allowed classes (here letters and
        # digits, two uuid5 hex strings long enough for any test length).
        length = int(inputs["length"])
        pool = (_guid("password", name) + _guid("password2", name)).replace("-", "") * 4
        return {"result": pool[:length]}
    if token == "azure-native:managedidentity:UserAssignedIdentity":
        return {
            "clientId": _guid("client", name),
            "principalId": _guid("principal", name),
            "tenantId": TENANT,
        }
    if token == "azure-native:webpubsub:WebPubSub":
        return {"hostName": f"{name}.webpubsub.azure.com"}
    if token == "azure-native:cosmosdb:DatabaseAccount":
        return {"documentEndpoint": f"https://{name}.documents.azure.com:443/"}
    if token == "azure-native:storage:StorageAccount":
        return {
            "primaryEndpoints": {
                service: f"https://{name}.{service}.core.windows.net/"
                for service in ("blob", "queue", "table", "file", "dfs")
            }
        }
    if token == "azure-native:web:WebApp":
        # As ARM answers: the identity's user-assigned identities are a map keyed by id.
        identity = dict(inputs.get("identity", {}))
        identity["userAssignedIdentities"] = {
            uid: {"clientId": _guid("client", uid), "principalId": _guid("principal", uid)}
            for uid in identity.get("userAssignedIdentities", [])
        }
        return {"defaultHostName": f"{name}.azurewebsites.net", "identity": identity}
    if token == "azure-native:applicationinsights:Component":
        key = _guid("ikey", name)
        return {
            "instrumentationKey": key,
            "appId": _guid("appid", name),
            "connectionString": (
                f"InstrumentationKey={key};"
                "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;"
                "LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/;"
                f"ApplicationId={_guid('appid', name)}"
            ),
        }
    if token == "azure-native:cognitiveservices:Account":
        properties = dict(inputs.get("properties", {}))
        subdomain = properties.get("customSubDomainName", name)
        properties["endpoint"] = f"https://{subdomain}.openai.azure.com/"
        return {"properties": properties}
    return {}


@dataclass(frozen=True)
class Deployment:
    """What one run of the program registered and exported."""

    cfg: StackConfig
    resources: list[Recorded]
    outputs: Mapping[str, Any]
    # Logical name -> logical names of the resources named in its depends_on option. The mocks
    # never see options, so a stack transformation (run by the SDK, mocks or not) records them.
    depends_on: Mapping[str, tuple[str, ...]]
    # Logical name -> the options it was declared with (protect, retain_on_delete...), ditto.
    options: Mapping[str, pulumi.ResourceOptions]

    def of_type(self, token: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == f"azure-native:{token}"]

    def one(self, token: str) -> Recorded:
        found = self.of_type(token)
        assert len(found) == 1, f"expected one {token}, found {len(found)}"
        return found[0]

    def app_settings(self) -> dict[str, str]:
        pairs = self.one("web:WebApp").inputs["siteConfig"]["appSettings"]
        names = [p["name"] for p in pairs]
        assert len(names) == len(set(names)), f"duplicate app settings: {names}"
        return {p["name"]: p["value"] for p in pairs}


def make_config(overrides: Mapping[str, str | None] | None = None) -> StackConfig:
    values: dict[str, str | None] = {**FULL_CONFIG, **(overrides or {})}
    return parse_config(values, stack="test", function_timeout_s=FUNCTION_TIMEOUT_S)


def run_program(cfg: StackConfig) -> Deployment:
    """Build the whole program under fresh mocks; return what it registered and exported."""
    from infra.__main__ import build

    mocks = RecordingMocks()
    # Pulumi's mocks use the thread's current event loop; an earlier test's asyncio.run()
    # leaves none set, so give the program a fresh one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="parley", stack=cfg.stack, preview=False)
    exported: dict[str, Any] = {}
    names: dict[int, str] = {}
    dependencies: dict[str, list[Any]] = {}

    options: dict[str, pulumi.ResourceOptions] = {}

    def record_options(args: pulumi.ResourceTransformationArgs) -> None:
        names[id(args.resource)] = args.name
        options[args.name] = args.opts or pulumi.ResourceOptions()
        depends_on = args.opts.depends_on if args.opts else None
        if isinstance(depends_on, list):
            dependencies[args.name] = depends_on
        elif depends_on is not None:
            dependencies[args.name] = [depends_on]
        return None

    @pulumi_test
    def _run() -> pulumi.Output[None]:
        pulumi.runtime.register_stack_transformation(record_options)
        outputs = build(cfg)
        return pulumi.Output.all(**outputs).apply(exported.update)

    _run()
    depends_on = {
        name: tuple(names[id(resource)] for resource in resources)
        for name, resources in dependencies.items()
    }
    return Deployment(
        cfg=cfg,
        resources=list(mocks.resources),
        outputs=exported,
        depends_on=depends_on,
        options=options,
    )


def run_main(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run ``infra/__main__.py``'s ``main`` as the engine would; return what it exported.

    ``main`` hands its program to ``pulumi.run``, which the mocks' already finished root stack
    refuses; the test takes the program from it and runs it the way the SDK would.
    """
    import infra.__main__ as program

    entries: list[Callable[[], Any]] = []
    monkeypatch.setattr(pulumi, "run", entries.append)
    program.main()
    (entry,) = entries
    exported: dict[str, Any] = {}

    async def run() -> None:
        outputs = await entry()
        exported.update(await pulumi.Output.all(**outputs).future() or {})

    pulumi_test(lambda: asyncio.ensure_future(run()))()
    return exported
