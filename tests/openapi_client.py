"""Drives a running CAB server through a Python client generated from its
OpenAPI document, and nothing else: sign in, file a change (and retry it with
its Idempotency-Key), find it in the list by its query parameters, submit it.

Run by tests/openapi.sh. Reads CAB_URL, CAB_USERNAME and CAB_PASSWORD (an
engineer's account) from the environment; exits non-zero on the first
surprise.
"""

import datetime
import os
import sys
import uuid

from cab_api_client import AuthenticatedClient, Client
from cab_api_client.api.auth import create_access_token
from cab_api_client.api.changes import create_change, list_changes, submit_change
from cab_api_client.models import (
    ChangeInput,
    ChangeOut,
    ChangePage,
    LinksIo,
    RiskAnswersIo,
    TestLevelsIo,
    TokenRequest,
    TokenResponse,
    WindowIo,
)


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def expect(response, status, kind, what):
    """The parsed body of a response with this status and documented type."""
    body = response.content.decode("utf-8", errors="replace")
    if response.status_code != status:
        fail(f"{what}: expected HTTP {status}, got {response.status_code}: {body}")
    if not isinstance(response.parsed, kind):
        fail(f"{what}: expected a {kind.__name__}, got {response.parsed!r}: {body}")
    extra = getattr(response.parsed, "additional_properties", {})
    if extra:
        fail(f"{what}: fields the document does not describe: {sorted(extra)}")
    print(f"  ok: {what}")
    return response.parsed


def ids(page):
    return {item.id for item in page.items}


def main():
    base_url = os.environ["CAB_URL"]
    username = os.environ["CAB_USERNAME"]
    password = os.environ["CAB_PASSWORD"]

    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    token = expect(
        create_access_token.sync_detailed(
            client=anonymous,
            body=TokenRequest(username=username, password=password),
        ),
        200,
        TokenResponse,
        f"POST /api/v1/auth/token signs in {username}",
    )
    if token.token_type != "Bearer" or not token.access_token:
        fail(f"unexpected token response: {token!r}")

    client = AuthenticatedClient(
        base_url=base_url, token=token.access_token, raise_on_unexpected_status=True
    )

    marker = uuid.uuid4().hex[:8]
    title = f"Rotate edge certificates {marker}"
    start = (
        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=14)
    ).replace(minute=0, second=0, microsecond=0)
    body = ChangeInput(
        title=title,
        description="Replace the expiring certificates on the edge proxies.",
        justification="They expire next month.",
        type_="normal",
        category="configuration",
        priority="high",
        services=["edge-proxy"],
        environments=["STAGE", "PROD"],
        implementation_plan="Swap the certificates with the pipeline.",
        test_plan="TLS checks on STAGE, then PROD.",
        test_levels=TestLevelsIo(integration=True, system=True),
        test_evidence=["https://ci.example.com/runs/1"],
        rollback_plan="Put the old certificates back.",
        window=WindowIo(
            start=start,
            end=start + datetime.timedelta(hours=1),
            time_zone="UTC",
        ),
        links=LinksIo(
            pull_request="https://git.example.com/pr/1",
            commit_sha="abcdef1234",
            artifact_digest="sha256:" + "b" * 64,
        ),
        risk=RiskAnswersIo(impact=2, likelihood=2, customer_facing=True),
    )
    key = str(uuid.uuid4())
    created = expect(
        create_change.sync_detailed(client=client, body=body, idempotency_key=key),
        201,
        ChangeOut,
        "POST /api/v1/changes files a draft",
    )
    if created.state != "draft" or created.title != title or created.author != username:
        fail(f"unexpected new change: {created!r}")
    print(f"  filed {created.key} ({created.id})")

    retried = create_change.sync_detailed(client=client, body=body, idempotency_key=key)
    again = expect(
        retried,
        201,
        ChangeOut,
        "POST /api/v1/changes retried with its Idempotency-Key",
    )
    if again.id != created.id or retried.headers.get("idempotent-replayed") != "true":
        fail(f"the retry filed another change or was not marked replayed: {again!r}")

    found = expect(
        list_changes.sync_detailed(client=client, q=marker, state="draft"),
        200,
        ChangePage,
        f"GET /api/v1/changes?q={marker}&state=draft",
    )
    if ids(found) != {created.id}:
        fail(f"the search should find exactly {created.key}, found {ids(found)}")

    elsewhere = expect(
        list_changes.sync_detailed(client=client, state="submitted"),
        200,
        ChangePage,
        "GET /api/v1/changes?state=submitted (before submitting)",
    )
    if created.id in ids(elsewhere):
        fail(f"{created.key} is a draft but is listed as submitted")

    submitted = expect(
        submit_change.sync_detailed(id=created.key, client=client),
        200,
        ChangeOut,
        f"POST /api/v1/changes/{created.key}/submit",
    )
    if submitted.id != created.id or submitted.state != "submitted":
        fail(f"expected {created.key} submitted, got state {submitted.state!r}")
    if submitted.revision != 1:
        fail(f"a submitted change is revision 1, got {submitted.revision}")

    now_listed = expect(
        list_changes.sync_detailed(client=client, state="submitted", limit=10),
        200,
        ChangePage,
        "GET /api/v1/changes?state=submitted&limit=10 (after submitting)",
    )
    if created.id not in ids(now_listed):
        fail(f"{created.key} is not listed as submitted")
    print(f"  {created.key} is {submitted.state}, revision {submitted.revision}")


if __name__ == "__main__":
    main()
