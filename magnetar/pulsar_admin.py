"""A small client for Pulsar's admin REST API (v2 for tenants/namespaces/topics/schemas,
v3 for functions).

Every create is idempotent: "already exists" (HTTP 409) counts as success when what exists
matches what was asked, so the tenant reconciler can repeat any step after a crash. Every
delete of a tenant or namespace rides out the broker's metadata race (see `DELETE_BACKOFF`)
and checks that the thing is gone.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from magnetar.retry import Backoff, retry_transient

# Deleting a tenant or namespace that was just in use races with the broker's own clean-up of
# its metadata (apache/pulsar#12553): it answers 500 "Directory not empty" for a few seconds.
DELETE_BACKOFF = Backoff(first_s=0.2, factor=2.0, max_s=2.0, budget_s=30.0)


class PulsarAdminError(Exception):
    """The admin API answered with an error status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        reason = body
        with contextlib.suppress(ValueError, AttributeError):
            reason = json.loads(body).get("reason", body)
        super().__init__(f"{method} {path} → {status}: {reason}")
        self.status = status
        self.reason = reason


def is_metadata_race(error: Exception) -> bool:
    """The broker's transient answer to deleting a recently used tenant or namespace."""
    return (
        isinstance(error, PulsarAdminError)
        and error.status == 500
        and "not empty" in str(error.reason).lower()
    )


def topic_path(topic: str) -> str:
    """`persistent://t/ns/name` → `persistent/t/ns/name` (the REST path form)."""
    domain, _, rest = topic.partition("://")
    if not rest or domain not in ("persistent", "non-persistent"):
        raise ValueError(f"not a fully qualified topic: {topic!r}")
    return f"{domain}/{rest}"


class PulsarAdmin:
    """Synchronous admin client authenticated with a (superuser) token."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        timeout_s: float = 30.0,
        delete_backoff: Backoff = DELETE_BACKOFF,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )
        self._delete_backoff = delete_backoff
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PulsarAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        ok_conflict: bool = False,
        ok_missing: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        if json_body is not None:
            kwargs["content"] = json.dumps(json_body)
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        response = self._http.request(method, path, **kwargs)
        if response.status_code == 409 and ok_conflict:
            return response
        if response.status_code == 404 and ok_missing:
            return response
        if response.status_code >= 400:
            raise PulsarAdminError(response.status_code, method, path, response.text)
        return response

    def _get_json(self, path: str, **params: Any) -> Any:
        response = self._call("GET", path, params=params or None)
        return response.json() if response.content else None

    # -- clusters, tenants ----------------------------------------------------------------

    def clusters(self) -> list[str]:
        return list(self._get_json("/admin/v2/clusters"))

    def tenants(self) -> list[str]:
        return list(self._get_json("/admin/v2/tenants"))

    def create_tenant(self, tenant: str, *, admin_roles: Sequence[str] = ()) -> None:
        body = {"adminRoles": sorted(admin_roles), "allowedClusters": self.clusters()}
        created = self._call("PUT", f"/admin/v2/tenants/{tenant}", json_body=body, ok_conflict=True)
        if created.status_code == 409:
            current = self._get_json(f"/admin/v2/tenants/{tenant}")
            if sorted(current.get("adminRoles", [])) != body["adminRoles"]:
                self._call("POST", f"/admin/v2/tenants/{tenant}", json_body=body)

    def _delete_settled(self, path: str, what: str) -> None:
        """DELETE `path` (forced), retried through the metadata race; then it must be gone."""

        def delete() -> None:
            self._call("DELETE", path, params={"force": "true"}, ok_missing=True)

        retry_transient(delete, is_metadata_race, self._delete_backoff, sleep=self._sleep)
        if self._call("GET", path, ok_missing=True).status_code != 404:
            raise PulsarAdminError(500, "DELETE", path, f"{what} still exists after its deletion")

    def delete_tenant(self, tenant: str) -> None:
        """Delete `tenant` with its namespaces, topics and functions; absent is fine."""
        for namespace in self.namespaces(tenant):
            self.delete_namespace(namespace)
        self._delete_settled(f"/admin/v2/tenants/{tenant}", f"tenant {tenant}")

    # -- namespaces and their policies ----------------------------------------------------

    def namespaces(self, tenant: str) -> list[str]:
        response = self._call("GET", f"/admin/v2/namespaces/{tenant}", ok_missing=True)
        return [] if response.status_code == 404 else list(response.json())

    def create_namespace(self, namespace: str) -> None:
        self._call("PUT", f"/admin/v2/namespaces/{namespace}", ok_conflict=True)

    def delete_namespace(self, namespace: str) -> None:
        """Delete `namespace` with its functions and topics; absent is fine. Functions first:
        a forced deletion leaves them registered with the worker, which then restarts their
        instances for ever (they fail without their topics)."""
        tenant, _, local = namespace.partition("/")
        for name in self.functions(tenant, local):
            self.delete_function(tenant, local, name)
        self._delete_settled(f"/admin/v2/namespaces/{namespace}", f"namespace {namespace}")

    def namespace_policies(self, namespace: str) -> dict[str, Any]:
        return dict(self._get_json(f"/admin/v2/namespaces/{namespace}"))

    def set_deduplication(self, namespace: str, enabled: bool) -> None:
        self._call("POST", f"/admin/v2/namespaces/{namespace}/deduplication", json_body=enabled)

    def set_retention(self, namespace: str, *, minutes: int, size_mb: int) -> None:
        self._call(
            "POST",
            f"/admin/v2/namespaces/{namespace}/retention",
            json_body={"retentionTimeInMinutes": minutes, "retentionSizeInMB": size_mb},
        )

    def set_backlog_quota(
        self, namespace: str, *, limit_bytes: int, policy: str = "producer_request_hold"
    ) -> None:
        """`producer_request_hold` never evicts: producers wait, then fail, and we surface it."""
        self._call(
            "POST",
            f"/admin/v2/namespaces/{namespace}/backlogQuota",
            params={"backlogQuotaType": "destination_storage"},
            json_body={"limitSize": limit_bytes, "limitTime": -1, "policy": policy},
        )

    def set_schema_compatibility(self, namespace: str, strategy: str) -> None:
        self._call(
            "PUT",
            f"/admin/v2/namespaces/{namespace}/schemaCompatibilityStrategy",
            json_body=strategy,
        )

    def set_publish_rate(self, namespace: str, *, messages_per_s: int, bytes_per_s: int) -> None:
        self._call(
            "POST",
            f"/admin/v2/namespaces/{namespace}/publishRate",
            json_body={
                "publishThrottlingRateInMsg": messages_per_s,
                "publishThrottlingRateInByte": bytes_per_s,
            },
        )

    def grant_namespace_permission(
        self, namespace: str, role: str, actions: Sequence[str] = ("produce", "consume")
    ) -> None:
        self._call(
            "POST",
            f"/admin/v2/namespaces/{namespace}/permissions/{role}",
            json_body=sorted(actions),
        )

    def namespace_permissions(self, namespace: str) -> dict[str, list[str]]:
        return dict(self._get_json(f"/admin/v2/namespaces/{namespace}/permissions"))

    # -- topics ---------------------------------------------------------------------------

    def create_partitioned_topic(self, topic: str, partitions: int) -> None:
        response = self._call(
            "PUT",
            f"/admin/v2/{topic_path(topic)}/partitions",
            json_body=partitions,
            ok_conflict=True,
        )
        if response.status_code == 409:
            current = self._get_json(f"/admin/v2/{topic_path(topic)}/partitions")
            if int(current.get("partitions", 0)) != partitions:
                raise PulsarAdminError(
                    409, "PUT", topic, f"exists with {current.get('partitions')} partitions"
                )

    def partitions(self, topic: str) -> int | None:
        """A partitioned topic's partition count; None when no partitioned topic has the name."""
        response = self._call("GET", f"/admin/v2/{topic_path(topic)}/partitions", ok_missing=True)
        if response.status_code == 404:
            return None
        return int(response.json().get("partitions", 0)) or None

    def create_topic(self, topic: str) -> None:
        """A non-partitioned topic (e.g. a compacted catalog or a DLQ)."""
        self._call("PUT", f"/admin/v2/{topic_path(topic)}", ok_conflict=True)

    def topics(self, namespace: str) -> list[str]:
        domain_ns = f"persistent/{namespace}"
        plain = self._call("GET", f"/admin/v2/{domain_ns}", ok_missing=True)
        partitioned = self._call("GET", f"/admin/v2/{domain_ns}/partitioned", ok_missing=True)
        found: set[str] = set()
        for response in (plain, partitioned):
            if response.status_code == 200:
                found.update(response.json())
        return sorted(found)

    def delete_subscription(self, topic: str, subscription: str) -> None:
        """Delete `subscription` of `topic` (partitioned or not), consumers or not; absent is fine."""
        self._call(
            "DELETE",
            f"/admin/v2/{topic_path(topic)}/subscription/{subscription}",
            params={"force": "true"},
            ok_missing=True,
        )

    def topic_stats(self, topic: str, *, partitioned: bool) -> dict[str, Any]:
        suffix = "partitioned-stats" if partitioned else "stats"
        return dict(self._get_json(f"/admin/v2/{topic_path(topic)}/{suffix}"))

    def trigger_compaction(self, topic: str) -> None:
        self._call("PUT", f"/admin/v2/{topic_path(topic)}/compaction", ok_conflict=True)

    def set_compaction_threshold(self, namespace: str, threshold_bytes: int) -> None:
        self._call(
            "PUT",
            f"/admin/v2/namespaces/{namespace}/compactionThreshold",
            json_body=threshold_bytes,
        )

    # -- schemas --------------------------------------------------------------------------

    def upload_schema(
        self,
        topic: str,
        schema_type: str,
        definition: str,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        tenant_ns_topic = topic_path(topic).split("/", 1)[1]
        self._call(
            "POST",
            f"/admin/v2/schemas/{tenant_ns_topic}/schema",
            json_body={
                "type": schema_type,
                "schema": definition,
                "properties": dict(properties or {}),
            },
        )

    def get_schema(self, topic: str) -> dict[str, Any] | None:
        tenant_ns_topic = topic_path(topic).split("/", 1)[1]
        response = self._call("GET", f"/admin/v2/schemas/{tenant_ns_topic}/schema", ok_missing=True)
        return None if response.status_code == 404 else dict(response.json())

    # -- functions (v3) -------------------------------------------------------------------

    def _function_path(self, tenant: str, namespace: str, name: str) -> str:
        return f"/admin/v3/functions/{tenant}/{namespace}/{name}"

    def create_function(
        self, config: Mapping[str, Any], package: Path, *, update: bool = False
    ) -> None:
        """Upload `package` (a .py, .zip or .whl) with `config` (a FunctionConfig as JSON)."""
        path = self._function_path(config["tenant"], config["namespace"], config["name"])
        with package.open("rb") as data:
            files = {
                "data": (package.name, data, "application/octet-stream"),
                "functionConfig": (None, json.dumps(dict(config)), "application/json"),
            }
            self._call("PUT" if update else "POST", path, files=files)

    def function_config(self, tenant: str, namespace: str, name: str) -> dict[str, Any] | None:
        response = self._call("GET", self._function_path(tenant, namespace, name), ok_missing=True)
        if response.status_code == 404:
            return None
        return dict(response.json())

    def functions(self, tenant: str, namespace: str) -> list[str]:
        response = self._call("GET", f"/admin/v3/functions/{tenant}/{namespace}", ok_missing=True)
        return [] if response.status_code == 404 else list(response.json())

    def function_status(self, tenant: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self._get_json(self._function_path(tenant, namespace, name) + "/status"))

    def function_user_metrics(self, tenant: str, namespace: str, name: str) -> dict[str, float]:
        """Each metric the Function recorded (`context.record_metric`), summed over its
        instances, since each instance started."""
        stats = self._get_json(self._function_path(tenant, namespace, name) + "/stats")
        found: dict[str, float] = {}
        for instance in stats.get("instances", []):
            for key, value in (instance.get("metrics", {}).get("userMetrics") or {}).items():
                if key.startswith("user_metric_") and key.endswith("_sum"):
                    metric = key.removeprefix("user_metric_").removesuffix("_sum")
                    found[metric] = found.get(metric, 0.0) + float(value)
        return found

    def restart_function(self, tenant: str, namespace: str, name: str) -> None:
        self._call("POST", self._function_path(tenant, namespace, name) + "/restart")

    def stop_function(self, tenant: str, namespace: str, name: str) -> None:
        self._call("POST", self._function_path(tenant, namespace, name) + "/stop")

    def start_function(self, tenant: str, namespace: str, name: str) -> None:
        self._call("POST", self._function_path(tenant, namespace, name) + "/start")

    def delete_function(self, tenant: str, namespace: str, name: str) -> None:
        self._call("DELETE", self._function_path(tenant, namespace, name), ok_missing=True)
