#!/usr/bin/env python3
"""Runs a peerwire-broker for the browser tests and lets a test restart it.

Usage: broker_ctl.py BROKER_BINARY [broker flags...]

Prints one line, `broker ws://127.0.0.1:P/ws ctl http://127.0.0.1:Q`, then
serves on Q:
  GET /restart?down_ms=N  kill the broker with SIGKILL (a crash: no close
                          frames), wait N ms, start it again on the same port;
                          answers once it listens again.
  GET /health             "ok"
Responses carry CORS headers so a test page on another port can call it.
Stops the broker when it exits (SIGTERM/SIGINT or stdin closed).
"""
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, binary, flags):
        self.binary, self.flags = binary, flags
        self.port = free_port()
        self.proc = None
        self.lock = threading.Lock()

    def start(self):
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        # No STUN unless the flags ask for a port: the tests must not
        # depend on udp/3478 being free (nor hold it across a restart).
        stun = [] if "--stun-port" in self.flags else ["--stun-port", "0"]
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), *stun, *self.flags],
            stdout=subprocess.DEVNULL, env=env)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("broker did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self, down_ms):
        with self.lock:
            self.kill()
            time.sleep(down_ms / 1000)
            self.start()


def main():
    broker = Broker(sys.argv[1], sys.argv[2:])
    broker.start()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/restart":
                broker.restart(int(query.get("down_ms", ["500"])[0]))
                body = b"restarted"
            elif url.path == "/health":
                body = b"ok"
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def stop(*_):
        broker.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"broker ws://127.0.0.1:{broker.port}/ws ctl http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        broker.kill()


if __name__ == "__main__":
    main()
