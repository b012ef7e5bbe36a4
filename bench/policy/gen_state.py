#!/usr/bin/env python3
"""Writes a weft policy state file (policy.json) holding N policies and M remote workloads.

Usage: gen_state.py POLICIES WORKLOADS > policy.json

Policies live in namespaces ns0..ns9; each selects app=appK (K = i % 50) and admits traffic from
pods of tier=tT in namespaces labelled team=T (T = i % 20) on TCP 8000+i % 100. Workloads sit on
a peer that is not the local router, so they only feed the address sets.
"""
import json
import sys

policies, workloads = int(sys.argv[1]), int(sys.argv[2])
entries = {}
version = 1


def put(key, value):
    global version
    entries[key] = {"version": version, "origin": "bench", "value": value}
    version += 1


for i in range(10):
    put(f"namespace/ns{i}", {"namespace": {"team": str(i % 20)}})
for i in range(policies):
    ns = f"ns{i % 10}"
    put(f"policy/{ns}/p{i}", {"policy": {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"p{i}", "namespace": ns},
        "spec": {
            "podSelector": {"matchLabels": {"app": f"app{i % 50}"}},
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"team": str(i % 20)}},
                          "podSelector": {"matchLabels": {"tier": f"t{i % 20}"}}}],
                "ports": [{"protocol": "TCP", "port": 8000 + i % 100}],
            }],
        },
    }})
for i in range(workloads):
    a = 10 * 2**24 + 33 * 2**16 + i  # 10.33.x.y, outside the workloads of the run
    addr = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
    put(f"workload/{addr}", {"workload": {
        "address": addr, "name": f"w{i}", "namespace": f"ns{i % 10}",
        "labels": {"app": f"app{i % 50}", "tier": f"t{i % 20}"},
        "ports": [], "host": "00:00:00:00:00:01",
    }})
json.dump({"entries": entries}, sys.stdout)
