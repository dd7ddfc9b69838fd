#!/usr/bin/env python3
"""Starts `scimd serve` for benches/run.sh and measures its start-up.

Usage: start.py LOGFILE -- scimd serve ARGS...
The server is started in its own session with NOTIFY_SOCKET pointing at a socket this
script listens on (as systemd would). Prints one JSON line: the pid, milliseconds until
READY=1 (the systemd readiness notification, sent once the listener is bound and every
tenant is open), and milliseconds until the first successful TLS GET /healthz. The server
keeps running after this script exits; run.sh stops it.
"""
import json, os, socket, ssl, subprocess, sys, tempfile, time

log_path = sys.argv[1]
cmd = sys.argv[sys.argv.index("--") + 1:]
listen = cmd[cmd.index("--listen") + 1]
host, port = listen.rsplit(":", 1)

sock_dir = tempfile.mkdtemp(prefix="scimd-bench-")
sock_path = os.path.join(sock_dir, "notify")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(sock_path)
notify.settimeout(30)  # the whole wait; a server that exits early is checked below

# Built before the clock starts: loading a TLS context costs Python ~20 ms.
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

env = dict(os.environ, NOTIFY_SOCKET=sock_path)
started = time.perf_counter()
proc = subprocess.Popen(cmd, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
ready_ms = None
while ready_ms is None:
    try:
        msg = notify.recv(4096).decode()
    except TimeoutError:
        sys.exit(f"scimd did not report READY=1 within 30 s (exit status {proc.poll()}); see {log_path}")
    if "READY=1" in msg.split("\n"):
        ready_ms = (time.perf_counter() - started) * 1000

deadline = started + 30
healthz_ms = None
while healthz_ms is None and time.perf_counter() < deadline:
    try:
        with socket.create_connection((host, int(port)), timeout=2) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                if tls.recv(64).startswith(b"HTTP/1.1 200"):
                    healthz_ms = (time.perf_counter() - started) * 1000
    except OSError:
        time.sleep(0.001)
notify.close()
os.unlink(sock_path)
os.rmdir(sock_dir)
if healthz_ms is None:
    sys.exit("scimd did not answer /healthz within 30 s")
print(json.dumps({"pid": proc.pid, "ready_ms": round(ready_ms, 1), "healthz_ms": round(healthz_ms, 1)}))
