#!/usr/bin/env python3
"""Writes tasks.jsonl of the Genesis suite (run after editing the task data).

Five task groups, each a tag: spec_saas and spec_ecommerce (write a product
specification), deployment (validate a deployment manifest), security (scan a
code snippet), performance (find a bottleneck in a profile and name the fix).
The classification groups (deployment, security) carry labels: true means
"has a problem". Expected data goes to the trusted scorer only.
"""

import json
import os

SPEC_SECTIONS = ["overview", "users", "features", "data_model", "api", "security", "non_functional"]
SAAS_TERMS = ["tenant", "subscription", "billing", "sso", "audit log", "onboarding"]
SHOP_TERMS = ["catalog", "cart", "checkout", "payment", "inventory", "order", "shipping", "refund"]


def spec(tid, split, kind, name, description, requirements, terms):
    sections = SPEC_SECTIONS + (["billing"] if kind == "saas" else ["fulfillment"])
    return {"id": tid, "tags": ["spec", f"spec_{kind}"], "split": split,
            "input": {"group": "spec", "product_type": kind, "name": name,
                      "description": description, "requirements": requirements},
            "expected": {"sections": sections, "terms": terms,
                         "requirements": [r.split(":")[0] for r in requirements]}}


def deploy(tid, split, manifest, issues):
    return {"id": tid, "tags": ["deployment"], "split": split, "label": bool(issues),
            "input": {"group": "deployment", "environment": "production", "manifest": manifest},
            "expected": {"issues": sorted(issues)}}


def svc(image="shop/api:1.4.2", replicas=3, health=True, limits=True, env=None, privileged=False):
    m = {"name": "api", "image": image, "replicas": replicas, "env": env or {"LOG_LEVEL": "info"},
         "privileged": privileged}
    if health:
        m["healthcheck"] = {"path": "/healthz", "interval_s": 10}
    if limits:
        m["resources"] = {"limits": {"cpu": "500m", "memory": "256Mi"}}
    return m


def sec(tid, split, code, types):
    return {"id": tid, "tags": ["security"], "split": split, "label": bool(types),
            "input": {"group": "security", "language": "python", "code": code},
            "expected": {"types": sorted(types)}}


def perf(tid, split, profile, bottleneck, technique):
    return {"id": tid, "tags": ["performance"], "split": split,
            "input": {"group": "performance", "profile": profile},
            "expected": {"bottleneck": bottleneck, "technique": technique}}


TASKS = [
    spec("saas-crm", "train", "saas", "PipelineCRM", "A CRM for small sales teams.",
         ["contacts: import contacts from CSV", "deals: track deals through stages",
          "reports: weekly revenue report by email"], SAAS_TERMS),
    spec("saas-projects", "train", "saas", "Taskboard", "Project management for agencies.",
         ["boards: kanban boards per client project", "time: time tracking per task",
          "invoices: export tracked time to invoices"], SAAS_TERMS),
    spec("saas-analytics", "train", "saas", "Metricly", "Product analytics for mobile apps.",
         ["events: ingest 10k events per second", "funnels: conversion funnels",
          "exports: scheduled CSV exports"], SAAS_TERMS),
    spec("saas-helpdesk", "validation", "saas", "Deskly", "Customer support ticketing.",
         ["tickets: email to ticket", "sla: SLA timers per priority"], SAAS_TERMS),
    spec("saas-hr", "holdout", "saas", "PeopleHub", "HR records and time off.",
         ["leave: time-off requests with approval", "payroll: payroll export"], SAAS_TERMS),
    spec("shop-fashion", "train", "ecommerce", "Threadline", "An online clothing store.",
         ["sizes: size and color variants", "returns: free returns within 30 days",
          "wishlist: customer wishlists"], SHOP_TERMS),
    spec("shop-grocery", "train", "ecommerce", "FreshCart", "Grocery delivery in one city.",
         ["slots: delivery time slots", "substitutions: substitute out-of-stock items",
          "subscriptions: weekly recurring baskets"], SHOP_TERMS),
    spec("shop-marketplace", "train", "ecommerce", "Craftly", "A marketplace for handmade goods.",
         ["sellers: seller onboarding and payouts", "reviews: product reviews",
          "search: full-text product search"], SHOP_TERMS),
    spec("shop-books", "validation", "ecommerce", "Pageturn", "An independent bookshop online.",
         ["preorders: preorders for upcoming titles", "gift: gift cards"], SHOP_TERMS),
    spec("shop-electronics", "holdout", "ecommerce", "Voltmart", "Consumer electronics.",
         ["warranty: extended warranty add-on", "compare: compare products"], SHOP_TERMS),

    deploy("deploy-clean", "train", svc(), []),
    deploy("deploy-latest", "train", svc(image="shop/api:latest"), ["latest_tag"]),
    deploy("deploy-single", "train", svc(replicas=1, health=False), ["no_healthcheck", "single_replica"]),
    deploy("deploy-limits", "train", svc(limits=False), ["no_resource_limits"]),
    deploy("deploy-secret", "train", svc(env={"DB_PASSWORD": "hunter2", "LOG_LEVEL": "info"}), ["plaintext_secret"]),
    deploy("deploy-privileged", "validation", svc(privileged=True, image="shop/api:latest"),
           ["latest_tag", "privileged"]),
    deploy("deploy-clean-2", "holdout", svc(image="shop/web:2.0.1", replicas=4), []),

    sec("sec-sqli", "train",
        "def find_user(db, name):\n    return db.execute(\"SELECT * FROM users WHERE name = '%s'\" % name)\n",
        ["sql_injection"]),
    sec("sec-safe-query", "train",
        "def find_user(db, name):\n    return db.execute(\"SELECT * FROM users WHERE name = ?\", (name,))\n", []),
    sec("sec-shell", "train",
        "import os\n\ndef ping(host):\n    os.system('ping -c 1 ' + host)\n", ["command_injection"]),
    sec("sec-secret", "train",
        "API_KEY = 'sk_live_51H8xQ2eZvKYlo2C'\n\ndef client():\n    return Client(API_KEY)\n", ["hardcoded_secret"]),
    sec("sec-path", "train",
        "def read_upload(name):\n    with open('/srv/uploads/' + name) as f:\n        return f.read()\n",
        ["path_traversal"]),
    sec("sec-pickle", "train",
        "import pickle\n\ndef load_session(blob):\n    return pickle.loads(blob)\n", ["insecure_deserialization"]),
    sec("sec-eval", "validation",
        "def calc(expr):\n    return eval(expr)\n", ["code_injection"]),
    sec("sec-hash", "holdout",
        "import hashlib\n\ndef store(pw):\n    return hashlib.md5(pw.encode()).hexdigest()\n", ["weak_hash"]),

    perf("perf-nplus1", "train",
         {"endpoint": "GET /orders", "p95_ms": 2400,
          "functions": [{"name": "list_orders", "ms": 2300, "db_queries": 501},
                        {"name": "render", "ms": 60, "db_queries": 0}]},
         "list_orders", "batch_queries"),
    perf("perf-scan", "train",
         {"endpoint": "GET /search", "p95_ms": 1800,
          "functions": [{"name": "search_products", "ms": 1700, "db_queries": 1, "rows_scanned": 2000000,
                         "rows_returned": 20},
                        {"name": "serialize", "ms": 40, "db_queries": 0}]},
         "search_products", "add_index"),
    perf("perf-dedupe", "train",
         {"endpoint": "POST /import", "p95_ms": 9000,
          "functions": [{"name": "parse_csv", "ms": 300, "db_queries": 0},
                        {"name": "dedupe_rows", "ms": 8500, "db_queries": 0, "complexity": "O(n^2)",
                         "note": "checks `row in seen_list` for every row"}]},
         "dedupe_rows", "use_set"),
    perf("perf-rates", "validation",
         {"endpoint": "GET /cart", "p95_ms": 1500,
          "functions": [{"name": "fetch_exchange_rate", "ms": 1400, "calls": 40, "distinct_args": 1},
                        {"name": "sum_cart", "ms": 5, "db_queries": 0}]},
         "fetch_exchange_rate", "cache"),
    perf("perf-export", "holdout",
         {"endpoint": "GET /export", "p95_ms": 30000, "peak_memory_mb": 3800,
          "functions": [{"name": "build_export", "ms": 29000, "db_queries": 1, "rows_loaded": 5000000,
                         "note": "loads every row into a list before writing"}]},
         "build_export", "streaming"),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "tasks.jsonl"), "w") as f:
        for t in TASKS:
            f.write(json.dumps(t, sort_keys=True) + "\n")
    print(f"wrote {len(TASKS)} tasks")


if __name__ == "__main__":
    main()
