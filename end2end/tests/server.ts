import { spawn, ChildProcess } from "node:child_process";
import path from "node:path";

export const E2E_PORT = Number(process.env.FOLIO_E2E_PORT ?? 3100);

/** The e2e database: a fresh one per run (the server creates and migrates it). */
function databaseUrl(): string {
  const base = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/folio";
  const name = process.env.FOLIO_E2E_DB ?? `folio_e2e_${Date.now()}`;
  process.env.FOLIO_E2E_DB = name;
  return base.replace(/\/[^/]*$/, `/${name}`);
}

const DATABASE_URL = databaseUrl();
const REDIS_PREFIX = `e2e:${process.env.FOLIO_E2E_DB}:`;

/** Environment of a Folio server under test: the release site, generous limits
 * (every test signs up from 127.0.0.1), the shared e2e database and Redis prefix. */
export function serverEnv(port: number): Record<string, string> {
  const root = path.resolve(__dirname, "../..");
  return {
    ...(process.env as Record<string, string>),
    DATABASE_URL,
    REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
    FOLIO_REDIS_PREFIX: REDIS_PREFIX,
    LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
    LEPTOS_OUTPUT_NAME: "folio",
    LEPTOS_SITE_ROOT: process.env.FOLIO_SITE_ROOT ?? path.join(root, "target/site"),
    LEPTOS_SITE_PKG_DIR: "pkg",
    LEPTOS_ENV: "PROD",
    FOLIO_REGISTER_LIMIT_IP: "10000/60",
    FOLIO_LOGIN_LIMIT_IP: "10000/60",
    FOLIO_LOG: "warn",
    // The tests read /metrics of the release build they run.
    FOLIO_METRICS_OPEN: "on",
  };
}

/** Starts another instance against the same Postgres and Redis (or what
 * `env` says instead); resolves when ready. */
export async function startInstance(
  port: number,
  env: Record<string, string> = {},
): Promise<ChildProcess> {
  const root = path.resolve(__dirname, "../..");
  const bin = process.env.FOLIO_SERVER_BIN ?? path.join(root, "target/release/server");
  const child = spawn(bin, [], { cwd: root, env: { ...serverEnv(port), ...env }, stdio: "ignore" });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (response.ok) return child;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  child.kill();
  throw new Error(`second instance on port ${port} did not become ready`);
}

/** A series' value on the `/metrics` page of the instance on `port` (0 when absent). */
export async function metric(port: number, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

let counter = 0;
/** A username no other test (or run) uses. */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}_${Date.now().toString(36)}${process.pid % 1000}${counter}`.slice(0, 30);
}

export const PASSWORD = "violet-kettle-harbour-93";
