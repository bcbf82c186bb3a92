// An open-loop load of reveal watchers for bench/read_api.py, in Node so that the load costs the
// machine little next to the server it measures (the Python client took a core of its own).
//
//   node bench/read_load.mjs <base-url> <wallets-file> <watchers> <period-s> <seconds> [connections]
//
// Each watcher polls `GET /api/authors/{wallet}/tokens?limit=20` for one author every `period`
// seconds, starting at a random instant of the first period, whatever the answers take: a request
// is due at its time even if the one before is still out. Latency is counted from when a request
// was due, not from when a connection was free to send it, so time spent queueing in this client
// counts too (no coordinated omission). Prints one JSON object on stdout.

import http from "node:http";
import { readFileSync } from "node:fs";

const [base, walletsFile, watchersArg, periodArg, secondsArg, connectionsArg] = process.argv.slice(2);
const watchers = Number(watchersArg);
const period = Number(periodArg) * 1000;
const duration = Number(secondsArg) * 1000;
const wallets = readFileSync(walletsFile, "utf8").split("\n").filter(Boolean);
// FIFO: every pooled connection stays in regular use, as a browser tab polling every 2 s keeps its
// own; with the default LIFO some sat idle past the server's keep-alive and a request sent as the
// server closed one failed with a reset (which a browser retries unseen).
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(connectionsArg || 128), scheduling: "fifo" });
const url = new URL(base);

const latencies = [];
const failures = {};
let sent = 0;
let late = 0; // answered after the watcher's next poll was due
const cpuBefore = process.cpuUsage();
const started = performance.now();
const deadline = started + duration;

function poll(wallet, due) {
  sent += 1;
  const request = http.get(
    {
      agent,
      host: url.hostname,
      port: url.port,
      path: `/api/authors/${wallet}/tokens?limit=20`,
      timeout: 10_000,
    },
    (response) => {
      response.resume();
      response.on("end", () => {
        const took = performance.now() - due;
        latencies.push(took);
        if (took > period) late += 1;
        if (response.statusCode !== 200) failures[response.statusCode] = (failures[response.statusCode] || 0) + 1;
      });
    },
  );
  request.on("timeout", () => request.destroy(new Error("timeout")));
  request.on("error", (error) => {
    latencies.push(performance.now() - due);
    failures[error.message] = (failures[error.message] || 0) + 1;
  });
}

function watch(wallet, due) {
  if (due >= deadline) return;
  poll(wallet, due);
  const next = due + period;
  setTimeout(() => watch(wallet, next), Math.max(0, next - performance.now()));
}

for (let i = 0; i < watchers; i += 1) {
  const wallet = wallets[Math.floor(Math.random() * wallets.length)];
  const first = started + Math.random() * period;
  setTimeout(() => watch(wallet, first), first - started);
}

// Wait for the answers still out after the deadline (at most the request timeout).
const done = () => latencies.length >= sent;
const finish = () => {
  const cpu = process.cpuUsage(cpuBefore);
  latencies.sort((a, b) => a - b);
  const at = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : NaN);
  const errors = Object.values(failures).reduce((a, b) => a + b, 0);
  process.stdout.write(
    JSON.stringify({
      sent,
      answered: latencies.length,
      errors,
      failures,
      late,
      rate: sent / (duration / 1000),
      p50_ms: at(50),
      p95_ms: at(95),
      p99_ms: at(99),
      max_ms: latencies.length ? latencies[latencies.length - 1] : NaN,
      client_cpu_seconds: (cpu.user + cpu.system) / 1e6,
    }) + "\n",
  );
  agent.destroy();
};
setTimeout(function wait() {
  if (done() || performance.now() > deadline + 11_000) finish();
  else setTimeout(wait, 50);
}, duration);
