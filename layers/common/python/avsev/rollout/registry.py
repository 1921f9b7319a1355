"""The model registry: what may serve, in S3 (no server).

Layout under `s3://<bucket>/<prefix>`:
  versions/<version>/bundle/<file>    the bundle's files, as built (model.so, trees.bin, card.json)
  versions/<version>/entry.json       card facts and lineage; written once, never changed
  versions/<version>/decision.json    approved / rejected / pending, why, by whom, when (latest wins)
  versions/<version>/gates.json       the quality gates' results and the approval policy (latest wins)
  aliases/<alias>.json                production / candidate → an approved version
  audit/<time>-<action>-<version>.json  every change

A version is immutable: publishing it again with the same files is a no-op, with other files
a refusal. Aliases move only to an approved version. An approval emits an EventBridge event
(`source: avsev.registry`, `detail-type: Model version approved`) that a deploy pipeline can
follow. Every refusal says why and changes nothing.

Quality gates (`avsev_tools.pipeline.gates`, run offline) are recorded with a version
(`record_gates`): with policy `auto` a pending version whose gates all pass is approved, with
`manual` it waits for a person; a version with a failing gate stays pending with the failing
gates as its reason, and cannot be approved until gates that pass are recorded.
"""

from __future__ import annotations

import builtins
import getpass
import json
import re
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avsev import clock
from avsev.constants import REGISTRY_PREFIX
from avsev.serving.bundle import CARD_FILE, BundleError, read_card, sha256_file
from avsev.serving.card import Metrics

SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
ALIASES = ("production", "candidate")
EVENT_SOURCE = "avsev.registry"
APPROVED_EVENT = "Model version approved"
BUNDLE_FILES = ("card.json", "model.so", "trees.bin")
GATE_POLICIES = ("auto", "manual")
GATE_FIELDS = ("name", "passed", "value", "threshold", "reason")


class RegistryError(Exception):
    """A refusal, with its reason; nothing was changed."""


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str = REGISTRY_PREFIX

    @classmethod
    def parse(cls, url: str) -> Location:
        """`s3://bucket/prefix` (prefix defaults to `registry/`)."""
        if not url.startswith("s3://"):
            raise RegistryError(f"registry {url!r}: expected s3://bucket[/prefix]")
        bucket, _, prefix = url[5:].partition("/")
        prefix = prefix.strip("/")
        return cls(bucket, f"{prefix}/" if prefix else REGISTRY_PREFIX)


def git_lineage(root: Path) -> dict[str, Any]:
    """The commit the bundle was published from, and whether the tree had changes."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _now() -> str:
    return clock.now().isoformat(timespec="seconds")


class Registry:
    def __init__(self, s3: Any, location: Location, *, events: Any = None) -> None:
        self.s3 = s3
        self.loc = location
        self.events = events

    # ---- storage ---------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return self.loc.prefix + "/".join(parts)

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.loc.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise RegistryError(f"corrupt registry entry s3://{self.loc.bucket}/{key}: {e}") from e
        if not isinstance(doc, dict):
            raise RegistryError(
                f"corrupt registry entry s3://{self.loc.bucket}/{key}: not an object"
            )
        return doc

    def _put(self, key: str, doc: Mapping[str, Any]) -> None:
        self.s3.put_object(
            Bucket=self.loc.bucket,
            Key=key,
            Body=json.dumps(doc, indent=1, default=str).encode(),
            ContentType="application/json",
        )

    def _audit(self, action: str, version: str, **details: Any) -> dict[str, Any]:
        at = clock.now().isoformat(timespec="microseconds")  # orders same-second changes
        entry = {"at": at, "action": action, "version": version, "by": _who(), **details}
        stamp = entry["at"].replace(":", "")
        self._put(
            self._key("audit", f"{stamp}-{action}-{version}-{uuid.uuid4().hex[:8]}.json"), entry
        )
        return entry

    # ---- reading ---------------------------------------------------------------------
    def entry(self, version: str) -> dict[str, Any]:
        _check_version(version)
        doc = self._get(self._key("versions", version, "entry.json"))
        if doc is None:
            raise RegistryError(
                f"unknown version {version}: `avsev registry list` shows what is published"
            )
        for field in ("version", "files", "card"):
            if field not in doc:
                raise RegistryError(f"corrupt registry entry for {version}: no {field!r}")
        return doc

    def decision(self, version: str) -> dict[str, Any]:
        return self._get(self._key("versions", version, "decision.json")) or {"status": "pending"}

    def gates(self, version: str) -> dict[str, Any] | None:
        """The quality gates recorded for the version (None: never run)."""
        return self._get(self._key("versions", version, "gates.json"))

    def show(self, version: str) -> dict[str, Any]:
        entry = self.entry(version)
        aliases = {a: v for a, v in self.aliases().items() if v == version}
        return entry | {
            "decision": self.decision(version),
            "aliases": sorted(aliases),
            "gates": self.gates(version),
        }

    def versions(self) -> list[str]:
        found: set[str] = set()
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.loc.bucket, Prefix=self._key("versions", ""), Delimiter="/"
        )
        for page in pages:
            for p in page.get("CommonPrefixes", []):
                found.add(p["Prefix"].rstrip("/").rsplit("/", 1)[-1])
        return sorted((v for v in found if SEMVER.match(v)), key=_semver_key)

    def list(self) -> list[dict[str, Any]]:
        aliases = self.aliases()
        out: list[dict[str, Any]] = []
        for version in self.versions():
            try:
                entry = self.entry(version)
                status = self.decision(version)["status"]
            except RegistryError as e:
                out.append({"version": version, "status": "corrupt", "problem": str(e)})
                continue
            metrics = Metrics.model_validate(entry["card"].get("metrics") or {}).test
            out.append(
                {
                    "version": version,
                    "status": status,
                    "aliases": sorted(a for a, v in aliases.items() if v == version),
                    "published_at": entry.get("published_at"),
                    "weighted_f1": metrics.weighted_f1,
                    "log_loss": metrics.log_loss,
                }
            )
        return out

    def aliases(self) -> dict[str, str]:
        out = {}
        for alias in ALIASES:
            doc = self._get(self._key("aliases", f"{alias}.json"))
            if doc and "version" in doc:
                out[alias] = str(doc["version"])
        return out

    def resolve(self, ref: str) -> str:
        """A version or an alias → a version that exists."""
        if ref in ALIASES:
            version = self.aliases().get(ref)
            if version is None:
                raise RegistryError(f"alias {ref} points at no version yet")
            return version
        self.entry(ref)
        return ref

    # ---- changing --------------------------------------------------------------------
    def publish(
        self,
        bundle: Path,
        *,
        training_data: Path | None = None,
        source_root: Path | None = None,
        lineage: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a built bundle as an immutable version with its lineage (`lineage`: more of
        it, e.g. a retraining's data snapshot and outcome window)."""
        if not (bundle / CARD_FILE).is_file():
            raise RegistryError(f"{bundle}: not a bundle (no {CARD_FILE})")
        try:
            card = read_card(bundle)
        except BundleError as e:
            raise RegistryError(str(e)) from e
        doc = card.to_dict()
        version = card.version
        _check_version(version)
        files = {f.name: sha256_file(f) for f in sorted(bundle.iterdir()) if f.is_file()}
        missing = [f for f in BUNDLE_FILES if f not in files]
        if missing:
            raise RegistryError(f"{bundle}: incomplete bundle, missing {', '.join(missing)}")
        existing = self._get(self._key("versions", version, "entry.json"))
        if existing is not None:
            if existing.get("files") == files:
                return existing | {"published": False, "reason": "already published, same files"}
            raise RegistryError(
                f"version {version} is already published with other files: versions are immutable "
                "(build a new version: PATCH for a rebuild, MINOR for a retrain)"
            )
        recorded: dict[str, Any] = {
            "git": git_lineage(source_root or Path.cwd()),
            "params": card.model.params,
            "data": doc.get("data"),
            **(lineage or {}),
        }
        data_path = training_data or Path(card.data.path or "")
        if data_path.is_file():
            recorded["training_data"] = {
                "path": str(data_path),
                "sha256": sha256_file(data_path),
                "bytes": data_path.stat().st_size,
                "rows": card.data.rows,
            }
        entry = {
            "version": version,
            "name": card.name,
            "arch": card.arch,
            "files": files,
            "card": {
                k: doc.get(k) for k in ("name", "version", "arch", "created", "metrics", "classes")
            },
            "lineage": recorded,
            "published_by": _who(),
            "published_at": _now(),
        }
        for name in files:
            self.s3.upload_file(
                str(bundle / name), self.loc.bucket, self._key("versions", version, "bundle", name)
            )
        self._put(self._key("versions", version, "entry.json"), entry)
        self._audit("publish", version, files=files)
        return entry | {"published": True}

    def _decide(self, version: str, status: str, reason: str) -> dict[str, Any]:
        if not reason.strip():
            raise RegistryError(f"{status} needs a reason")
        self.entry(version)
        if status == "rejected":
            holding = [a for a, v in self.aliases().items() if v == version]
            if holding:
                raise RegistryError(
                    f"version {version} is {' and '.join(holding)}: move the alias first"
                )
        decision = {"status": status, "reason": reason, "by": _who(), "at": _now()}
        self._put(self._key("versions", version, "decision.json"), decision)
        self._audit(status, version, reason=reason)
        return decision

    def record_gates(
        self, version: str, gates: Sequence[Mapping[str, Any]], *, policy: str = "manual"
    ) -> dict[str, Any]:
        """Store the version's gate results; then, for a pending version: all passed and
        policy `auto` → approved; all passed and `manual` → pending, awaiting a person; any
        failed → pending, the failing gates as the reason. An approved or rejected version
        keeps its decision (the gates are recorded beside it). Returns the decision."""
        if policy not in GATE_POLICIES:
            raise RegistryError(f"gate policy {policy!r}: one of {', '.join(GATE_POLICIES)}")
        self.entry(version)
        if not gates:
            raise RegistryError("no gate results to record")
        for g in gates:
            missing = [f for f in GATE_FIELDS if f not in g]
            if missing:
                raise RegistryError(f"gate result {g.get('name')!r}: missing {', '.join(missing)}")
        failed = [g for g in gates if not g["passed"]]
        doc = {
            "policy": policy,
            "passed": not failed,
            "failed": [g["name"] for g in failed],
            "gates": [dict(g) for g in gates],
            "by": _who(),
            "at": _now(),
        }
        self._put(self._key("versions", version, "gates.json"), doc)
        self._audit("gates", version, policy=policy, passed=not failed, failed=doc["failed"])
        current = self.decision(version)
        if current["status"] != "pending":
            return current
        if failed:
            reason = "gates failed: " + "; ".join(f"{g['name']}: {g['reason']}" for g in failed)
            return self._decide(version, "pending", reason)
        names = ", ".join(g["name"] for g in gates)
        if policy == "auto":
            return self.approve(version, f"all {len(gates)} gates passed ({names}), policy auto")
        return self._decide(
            version,
            "pending",
            f"all {len(gates)} gates passed ({names}); policy manual: awaiting a person's approval",
        )

    def approve(self, version: str, reason: str) -> dict[str, Any]:
        gates = self.gates(version)
        if gates is not None and not gates.get("passed"):
            raise RegistryError(
                f"version {version} failed its quality gates ({', '.join(gates['failed'])}): "
                "it stays pending until gates that pass are recorded"
            )
        decision = self._decide(version, "approved", reason)
        if self.events is not None:
            entry = self.entry(version)
            self.events.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": APPROVED_EVENT,
                        "Detail": json.dumps(
                            {
                                "version": version,
                                "registry": f"s3://{self.loc.bucket}/{self.loc.prefix}",
                                "reason": reason,
                                "metrics": entry["card"].get("metrics", {}).get("test", {}),
                            },
                            default=str,
                        ),
                    }
                ]
            )
        return decision

    def reject(self, version: str, reason: str) -> dict[str, Any]:
        return self._decide(version, "rejected", reason)

    def set_alias(self, alias: str, version: str, reason: str = "") -> dict[str, Any]:
        if alias not in ALIASES:
            raise RegistryError(f"alias {alias!r}: one of {', '.join(ALIASES)}")
        self.entry(version)
        status = self.decision(version)["status"]
        if status != "approved":
            raise RegistryError(
                f"version {version} is {status}: an alias moves only to an approved version"
            )
        doc = {"version": version, "by": _who(), "at": _now(), "reason": reason}
        self._put(self._key("aliases", f"{alias}.json"), doc)
        self._audit("alias", version, alias=alias, reason=reason)
        return doc

    def for_deploy(self, ref: str, *, force: str | None = None) -> str:
        """The version to deploy: approved, or forced with a reason (audited)."""
        version = self.resolve(ref)
        status = self.decision(version)["status"]
        if status != "approved":
            if not force:
                raise RegistryError(
                    f"version {version} is {status}, not approved: approve it, or deploy with "
                    "--force REASON"
                )
            self._audit("forced-deploy", version, status=status, reason=force)
        return version

    def fetch(self, version: str, into: Path) -> Path:
        """The version's bundle files, checked against their sha256, in `into/<name>-<version>`."""
        entry = self.entry(version)
        target = into / f"{entry['name']}-{version}"
        target.mkdir(parents=True, exist_ok=True)
        for name, digest in entry["files"].items():
            path = target / name
            if not (path.exists() and sha256_file(path) == digest):
                self.s3.download_file(
                    self.loc.bucket, self._key("versions", version, "bundle", name), str(path)
                )
            if sha256_file(path) != digest:
                raise RegistryError(f"version {version}: {name} does not match its sha256")
        return target

    def audit_trail(self) -> builtins.list[dict[str, Any]]:
        out: builtins.list[dict[str, Any]] = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.loc.bucket, Prefix=self._key("audit", "")
        )
        for page in pages:
            for obj in page.get("Contents", []):
                doc = self._get(obj["Key"])
                if doc:
                    out.append(doc)
        return sorted(out, key=lambda d: d["at"])


def _check_version(version: str) -> None:
    if not SEMVER.match(version):
        raise RegistryError(f"version {version!r} is not a semantic version X.Y.Z")


def _semver_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))
