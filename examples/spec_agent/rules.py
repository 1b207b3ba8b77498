"""The evolvable rules of the spec agent. Deliberately incomplete."""

import re

SECTION_TEXT = {
    "overview": "{name}: {description} This document describes the product scope, goals and success metrics.",
    "users": "Primary users are account owners, team members and administrators of {name}, each with a role.",
    "features": "Core features of {name}, one per requirement, each with acceptance criteria and priority.",
    "data_model": "Entities are stored in a relational database with a primary key, timestamps and soft deletes.",
    "api": "A versioned REST API under /api/v1 with JSON bodies, pagination and idempotency keys for writes.",
    "security": "Authentication with passwords and two-factor codes, role-based access control, TLS everywhere.",
    "non_functional": "99.9% availability, p95 latency under 300 ms, daily backups kept for 30 days, GDPR export.",
    "billing": "Plans are billed monthly or yearly through a subscription with per-seat pricing and a free trial.",
}

SAAS_EXTRA = ("Every tenant's data is isolated by tenant id. Customers sign in with SSO (SAML, OIDC). "
              "An audit log records administrative actions. A guided onboarding checklist helps new accounts.")


def write_spec(task):
    name, desc = task["name"], task["description"]
    sections = {k: v.format(name=name, description=desc) for k, v in SECTION_TEXT.items()}
    reqs = "; ".join(r.split(":")[0] + " -" + r.split(":", 1)[-1] for r in task["requirements"])
    sections["features"] += " Requirements: " + reqs + "."
    if task["product_type"] == "saas":
        sections["security"] += " " + SAAS_EXTRA
    else:
        # Ecommerce: the catalog and cart flow, but no fulfillment section yet.
        sections["features"] += " Shoppers browse the catalog, add items to a cart and pay at checkout."
    return {"title": name, "sections": sections}


def check_deployment(task):
    m = task["manifest"]
    issues = []
    if m.get("image", "").endswith(":latest") or ":" not in m.get("image", ""):
        issues.append("latest_tag")
    if m.get("replicas", 1) < 2:
        issues.append("single_replica")
    if "healthcheck" not in m:
        issues.append("no_healthcheck")
    # Resource limits, secrets and privileged containers are not checked yet.
    return {"valid": not issues, "issues": issues}


PATTERNS = [
    ("sql_injection", r"(SELECT|INSERT|UPDATE|DELETE)[^\n]*['\"]\s*%"),
    ("command_injection", r"os\.system\(|subprocess\.[a-z_]+\([^)]*shell=True"),
    ("code_injection", r"\beval\(|\bexec\("),
    ("hardcoded_secret", r"(API_KEY|SECRET|PASSWORD|TOKEN)\s*=\s*['\"][^'\"]{8,}"),
]


def scan_code(task):
    code = task["code"]
    findings = [{"type": t} for t, p in PATTERNS if re.search(p, code)]
    return {"vulnerable": bool(findings), "findings": findings}


def find_bottleneck(task):
    fns = task["profile"]["functions"]
    slowest = max(fns, key=lambda f: f.get("ms", 0))
    if slowest.get("db_queries", 0) > 10:
        technique = "batch_queries"
    elif slowest.get("rows_scanned", 0) > 100 * max(1, slowest.get("rows_returned", 1)):
        technique = "add_index"
    else:
        technique = "cache"
    return {"bottleneck": slowest["name"], "technique": technique}
