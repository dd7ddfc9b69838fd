#!/usr/bin/env python3
"""RSS of the release binary around six concurrent count=1000 list pages of large users
(issue 13 item 6).

    cargo build --release
    python3 benches/page_rss.py [target/release/scimd] [USERS]

Seeds USERS (default 2,000) users of about 32 KiB each (30 emails of 1 KiB) straight into a
new tenant's database, starts `scimd serve`, reads VmRSS from /proc once warm, while six
clients each fetch GET /Users?count=1000 at once (polling every 10 ms; VmHWM is the peak),
and 5 s after they finish; ROUNDS (default 3) rounds. Prints one JSON line.
"""

import base64
import json
import os
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/scimd"
users = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
password = "correct horse battery staple"


def run(*args, stdin=None):
    subprocess.run([binary, *args], input=stdin, check=True, capture_output=True, text=True)


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) // 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "data")
    run("tenant", "create", "acme", "--data-dir", data)
    run("admin", "add", "--tenant", "acme", "--username", "scim-admin", "--password-stdin", "--data-dir", data, stdin=password)
    run("cert", "self-signed", "--host", "localhost", "--out", os.path.join(tmp, "certs"))
    db = sqlite3.connect(os.path.join(data, "tenants", "acme", "scim.db"))
    now = "2026-01-01T00:00:00.000Z"
    db.executemany(
        "INSERT INTO users (id, user_name, user_name_key, active, created, last_modified) VALUES (?, ?, ?, 1, ?, ?)",
        ((f"big-{i}", f"big{i}@example.com", f"big{i}@example.com", now, now) for i in range(users)),
    )
    pks = [pk for (pk,) in db.execute("SELECT pk FROM users WHERE id LIKE 'big-%'")]
    db.executemany(
        "INSERT INTO user_emails (user_pk, position, value, type) VALUES (?, ?, ?, 'work')",
        ((pk, j, f"{j}-{pk}-" + "x" * 1000 + "@example.com") for pk in pks for j in range(30)),
    )
    db.commit()
    db.close()

    port = free_port()
    certs = os.path.join(tmp, "certs")
    cert, key = os.path.join(certs, "server.pem"), os.path.join(certs, "server.key")
    env = dict(os.environ, RUST_LOG="warn", SCIMD_METRICS_LISTEN="off")
    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--cert", cert, "--key", key], env=env)
    try:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        auth = "Basic " + base64.b64encode(f"scim-admin:{password}".encode()).decode()

        def get(path):
            req = urllib.request.Request(f"https://127.0.0.1:{port}/t/acme/scim/v2{path}", headers={"authorization": auth})
            with urllib.request.urlopen(req, context=context, timeout=120) as resp:
                return resp.read()

        deadline = time.time() + 30
        while True:
            try:
                get("/Users?count=1")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        get("/Users?count=10")
        base = status(server.pid, "VmRSS")
        sizes, peak, after, took = [], [0], [], []

        def client():
            body = get("/Users?count=1000")
            sizes.append((len(body), json.loads(body)["itemsPerPage"]))

        for _ in range(int(os.environ.get("ROUNDS", "3"))):
            threads = [threading.Thread(target=client) for _ in range(6)]
            started = time.time()
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                peak[0] = max(peak[0], status(server.pid, "VmRSS"))
                time.sleep(0.01)
            took.append(round(time.time() - started, 2))
            time.sleep(5)
            after.append(status(server.pid, "VmRSS"))
        print(json.dumps({
            "binary": binary, "users": users, "page_bytes": sizes[0][0], "items_per_page": sizes[0][1],
            "six_pages_s": took, "rss_base_mib": base, "rss_peak_mib": max(peak[0], status(server.pid, "VmHWM")),
            "rss_5s_after_each_round_mib": after,
        }))
    finally:
        server.terminate()
        server.wait(timeout=30)
