"""The operators' analytics workbook (``docs/deploy.md``, "Analytics workbook").

One Azure Monitor workbook on the Application Insights component, its charts drawn from the
analytics events (``shared/events.py``, rows of ``customEvents`` named ``parley.<event>``). The
queries live beside this module as ``workbook/*.kql`` files, so that they are read, reviewed and
tested (``tests/infra/test_workbook.py``) as code; this module only arranges them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi_azure_native import applicationinsights

from infra.stack_config import StackConfig

QUERY_DIR = Path(__file__).resolve().parent / "workbook"
# The workbook's resource name must be a GUID; derived from the stack's prefix so that every
# update finds the same workbook instead of creating another.
WORKBOOK_NAMESPACE = uuid.UUID("6f1d8c3e-2f0b-4d8e-9a51-7c0d1e2b3a45")


@dataclass(frozen=True)
class Chart:
    file: str  # under workbook/
    title: str


CHARTS: tuple[Chart, ...] = (
    Chart("daily_active_users.kql", "Daily active users"),
    Chart("turns_and_tokens_per_day.kql", "Turns and tokens per day"),
    Chart("tokens_per_model.kql", "Tokens per model"),
    Chart("answer_latency.kql", "Answer latency (ms): median and p95"),
    Chart("ratings_per_model.kql", "Answers rated up and down per model"),
    Chart("cached_prompt_share.kql", "Prompt tokens served from the cache (%)"),
    Chart("quota_refusals.kql", "Turns refused for quota"),
    Chart("archival.kql", "Archival: sessions moved and failed"),
)


def query_text(chart: Chart) -> str:
    return (QUERY_DIR / chart.file).read_text(encoding="utf-8").strip()


def workbook_content(charts: tuple[Chart, ...] = CHARTS) -> dict[str, Any]:
    """The workbook's ``Notebook/1.0`` document: a heading, then one query item per chart."""
    items: list[dict[str, Any]] = [
        {
            "type": 1,
            "content": {
                "json": "## Parley analytics\n\nThe last 30 days, from the app's analytics "
                'events (docs/operations.md, "Analytics").'
            },
            "name": "heading",
        }
    ]
    for chart in charts:
        items.append(
            {
                "type": 3,  # a query
                "content": {
                    "version": "KqlItem/1.0",
                    "query": query_text(chart),
                    "size": 0,
                    "title": chart.title,
                    "queryType": 0,  # Logs (Analytics)
                    "resourceType": "microsoft.insights/components",
                },
                "name": chart.file.removesuffix(".kql"),
            }
        )
    return {"version": "Notebook/1.0", "items": items, "isLocked": False}


def workbook_name(prefix: str) -> str:
    return str(uuid.uuid5(WORKBOOK_NAMESPACE, f"{prefix}-analytics"))


def create_workbook(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    component: applicationinsights.Component,
    tags: Mapping[str, str],
) -> applicationinsights.Workbook:
    return applicationinsights.Workbook(
        f"{prefix}-analytics",
        resource_name_=workbook_name(prefix),
        resource_group_name=resource_group_name,
        location=cfg.location,
        kind=applicationinsights.WorkbookSharedTypeKind.SHARED,
        category="workbook",
        display_name=f"Parley analytics ({prefix})",
        source_id=component.id,
        serialized_data=json.dumps(workbook_content(), separators=(",", ":")),
        version="Notebook/1.0",
        tags=dict(tags),
    )
