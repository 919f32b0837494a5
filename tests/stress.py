#!/usr/bin/env python3
"""Stress figures for a `cab` binary, each against its own fresh database and
on loopback only. Prints one line per figure; see tests/stress.sh.

    python3 tests/stress.py PATH/TO/cab [scenario ...]

Scenarios: slow, shutdown, memory, flood, logs, outage (default: all).
"""

import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PG = "postgres://postgres@127.0.0.1:5432"
KEY = "stress-test-key-0123456789abcdef0123456789"
PASSWORD = "correct horse battery staple"


def psql(sql, db="postgres"):
    subprocess.run(
        ["psql", "-q", "-X", f"{PG}/{db}", "-c", sql],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`cab serve` on a fresh database, as an operator starts it."""

    def __init__(self, cab, env=None, log=None):
        self.cab = cab
        self.db = f"cab_stress_{random.randrange(1 << 30)}"
        self.url = f"{PG}/{self.db}"
        self.port = free_port()
        self.log = log
        self.env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "CAB_SECRET_KEY": KEY,
            "CAB_LISTEN": f"127.0.0.1:{self.port}",
            "RUST_LOG": "warn",
            "NO_COLOR": "1",
            **(env or {}),
        }
        # None: the variable is left unset (the server's default).
        self.env = {k: v for k, v in self.env.items() if v is not None}
        # The migration and the first user go to the database directly.
        subprocess.run(
            [cab, "migrate"],
            env={**self.env, "DATABASE_URL": f"{PG}/{self.db}", "RUST_LOG": "warn"},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [cab, "user", "add", "alice", "--role", "engineer", "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            env={**self.env, "DATABASE_URL": f"{PG}/{self.db}"},
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self):
        self.proc = subprocess.Popen(
            [self.cab, "serve"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log or subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert "listening" in line, line
        return self

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def mem(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")


async def sign_in(port, username, password, source="127.0.0.1"):
    """One API sign-in on its own connection; returns (status, seconds)."""
    started = time.monotonic()
    body = json.dumps({"username": username, "password": password}).encode()
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0)
        )
        writer.write(
            b"POST /api/v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 60)
        writer.close()
        status = int(head.split()[1]) if head else 0
    except (OSError, asyncio.TimeoutError, IndexError, ValueError):
        status = 0
    return status, time.monotonic() - started


def report(name, value):
    print(f"{name}: {value}", flush=True)


async def slow(cab, clients=200, seconds=20):
    """Clients that send a request line, then one header byte a second."""
    s = Server(cab).start()
    try:
        await asyncio.sleep(0.5)
        base = s.fds()
        closed = []
        started = time.monotonic()

        async def dribble():
            try:
                r, w = await asyncio.open_connection("127.0.0.1", s.port)
                w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                await w.drain()
                while time.monotonic() - started < seconds:
                    w.write(b"a")
                    await w.drain()
                    try:
                        data = await asyncio.wait_for(r.read(1), 1.0)
                        if data == b"" or data:
                            closed.append(time.monotonic() - started)
                            w.close()
                            return
                    except asyncio.TimeoutError:
                        pass
                w.close()
            except OSError:
                closed.append(time.monotonic() - started)

        tasks = [asyncio.create_task(dribble()) for _ in range(clients)]
        await asyncio.sleep(3)
        at3 = s.fds()
        await asyncio.sleep(seconds - 4)
        held = s.fds()
        await asyncio.gather(*tasks)
        report("slow clients", clients)
        report(
            "server descriptors: before / 3 s in / %d s in" % (seconds - 1),
            f"{base} / {at3} / {held}",
        )
        report(
            "slow clients closed by the server",
            f"{len(closed)} (median after {statistics.median(closed):.1f} s)" if closed else "0",
        )
    finally:
        s.stop()


async def shutdown(cab, limit=45):
    """SIGTERM while one client has sent half a request and stalls."""
    s = Server(cab).start()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", s.port)
        w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await w.drain()
        await asyncio.sleep(0.3)
        started = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        while s.proc.poll() is None and time.monotonic() - started < limit:
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        code = s.proc.poll()
        if code is None:
            report("shutdown with a stalled client", f"still running after {limit} s")
        else:
            report("shutdown with a stalled client", f"{took:.2f} s, exit status {code}")
        w.close()
    finally:
        s.stop()


async def memory(cab, target=500, addresses=100):
    """Memory around a flood of made-up usernames from 100 addresses, each
    connection guessing again as soon as it is answered (or after the
    Retry-After of a refusal), until `target` passwords have been checked."""
    s = Server(cab).start()
    try:
        await sign_in(s.port, "alice", PASSWORD)
        await asyncio.sleep(1)
        idle = s.mem()["VmRSS"]
        checked = 0
        answers = {}
        started = time.monotonic()

        async def client(i):
            nonlocal checked
            k = 0
            while checked < target and time.monotonic() - started < 300:
                k += 1
                source = f"127.1.{i // 250}.{1 + i % 250}"
                st, _ = await sign_in(s.port, f"nobody-{i}-{k}", "guess", source)
                answers[st] = answers.get(st, 0) + 1
                if st == 401:
                    checked += 1
                elif st in (429, 503, 0):
                    await asyncio.sleep(1)

        await asyncio.gather(*(client(i) for i in range(addresses)))
        took = time.monotonic() - started
        await asyncio.sleep(5)
        m = s.mem()
        report(
            "sign-in flood",
            f"{checked} passwords checked in {took:.1f} s from {addresses} addresses, "
            f"answers {dict(sorted(answers.items()))}",
        )
        report(
            "memory idle / peak / resting 5 s after the flood (MiB)",
            f"{idle:.0f} / {m['VmHWM']:.0f} / {m['VmRSS']:.0f}",
        )
    finally:
        s.stop()


async def flood_run(s, addresses=40, per_address=10, attempts=4, legit_tries=5):
    stop = time.monotonic() + 60
    answers = {}

    async def attacker(src, n):
        for k in range(attempts):
            if time.monotonic() > stop:
                return
            st, _ = await sign_in(s.port, f"made-up-{src}-{n}-{k}", "guess", src)
            answers[st] = answers.get(st, 0) + 1

    tasks = [
        asyncio.create_task(attacker(f"127.0.0.{2 + a}", n))
        for a in range(addresses)
        for n in range(per_address)
    ]
    await asyncio.sleep(1)
    legit = []
    for _ in range(legit_tries):
        legit.append(await sign_in(s.port, "alice", PASSWORD))
    await asyncio.gather(*tasks)
    return legit, answers


async def flood(cab):
    """A legitimate sign-in while 400 connections from 40 addresses guess."""
    s = Server(cab).start()
    try:
        unloaded = [(await sign_in(s.port, "alice", PASSWORD))[1] for _ in range(5)]
        base = statistics.median(unloaded)
        legit, answers = await flood_run(s)
        times = [t for _, t in legit]
        report("unloaded sign-in (median of 5)", f"{base * 1000:.0f} ms")
        report(
            "legitimate sign-in under the flood",
            "statuses %s, median %.2f s (%.0fx unloaded), worst %.2f s"
            % ([st for st, _ in legit], statistics.median(times), statistics.median(times) / base, max(times)),
        )
        report("flood answers", dict(sorted(answers.items())))
    finally:
        s.stop()


async def logs(cab):
    """Log lines and bytes per refused sign-in, at the default log level."""
    with tempfile.NamedTemporaryFile("w+b", suffix=".log") as log:
        s = Server(cab, env={"RUST_LOG": None}, log=log).start()
        try:
            await asyncio.sleep(0.5)
            start = os.path.getsize(log.name)
            lines_before = open(log.name, "rb").read().count(b"\n")
            refused = 0
            rounds = 0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                rounds += 1
                results = await asyncio.gather(
                    *(sign_in(s.port, f"nobody{i}", "guess", f"127.0.0.{2 + i % 40}") for i in range(100))
                )
                refused += sum(1 for st, _ in results if st >= 400 or st == 0)
            await asyncio.sleep(1)
            data = open(log.name, "rb").read()
            lines = data.count(b"\n") - lines_before
            size = len(data) - start
            report("refused sign-ins in 20 s", refused)
            report(
                "log written",
                f"{lines} lines, {size / 1024:.0f} KiB: {lines / max(refused, 1):.2f} lines and "
                f"{size / max(refused, 1):.0f} bytes per refused sign-in",
            )
        finally:
            s.stop()


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut and restored."""

    def __init__(self):
        self.up = True
        self.conns = []

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, r, w):
        if not self.up:
            w.close()
            return
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", 5432)
        except OSError:
            w.close()
            return
        self.conns += [w, uw]

        async def pipe(a, b):
            try:
                while data := await a.read(65536):
                    b.write(data)
                    await b.drain()
            except (OSError, ConnectionError):
                pass
            b.close()

        asyncio.create_task(pipe(r, uw))
        asyncio.create_task(pipe(ur, w))

    def down(self):
        # Nothing listens any more: connecting is refused, as with a
        # stopped PostgreSQL.
        self.up = False
        self.server.close()
        for c in self.conns:
            c.transport.abort()
        self.conns = []


async def outage(cab):
    """How long requests wait for their 503 while the database is away."""
    proxy = Proxy()
    await proxy.start()
    s = Server(cab)
    s.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{proxy.port}/{s.db}"
    # In a thread: the proxy runs on this loop and must answer meanwhile.
    await asyncio.to_thread(s.start)
    try:
        st, _ = await sign_in(s.port, "alice", PASSWORD)
        proxy.down()
        await asyncio.sleep(1)
        waits = []
        statuses = []
        for _ in range(10):
            st, t = await sign_in(s.port, "alice", PASSWORD)
            statuses.append(st)
            waits.append(t)
        report(
            "answers while the database is away",
            f"statuses {sorted(set(statuses))}, median {statistics.median(waits) * 1000:.0f} ms, worst {max(waits) * 1000:.0f} ms",
        )
    finally:
        s.stop()


SCENARIOS = {
    "slow": slow,
    "shutdown": shutdown,
    "memory": memory,
    "flood": flood,
    "logs": logs,
    "outage": outage,
}


def main():
    cab = sys.argv[1]
    names = sys.argv[2:] or list(SCENARIOS)
    for name in names:
        print(f"== {name}", flush=True)
        asyncio.run(SCENARIOS[name](cab))


if __name__ == "__main__":
    main()
