import { spawn, ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

/** One message the sink received, decoded (scripts/smtp_sink.py). */
export interface Delivered {
  from: string;
  to: string[];
  subject: string;
  message_id: string;
  text: string | null;
  html: string | null;
}

/** A real SMTP server (Debian's python3-aiosmtpd, through
 * scripts/smtp_sink.py) on a spare loopback port: what a Folio instance
 * started with `SMTP_URL: sink.url` mails to. */
export interface Sink {
  url: string;
  messages(): Delivered[];
  /** The first message to `to` with `subject`, waiting for it (at most 20 s). */
  waitFor(to: string, subject: string): Promise<Delivered>;
  stop(): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

export async function startSink(): Promise<Sink> {
  const root = path.resolve(__dirname, "../..");
  // Debian's package is for Debian's Python (scripts/common.sh: ensure_aiosmtpd).
  const python =
    process.env.FOLIO_SMTP_PYTHON ?? (existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
  const port = await freePort();
  const file = path.join(os.tmpdir(), `folio-e2e-smtp-${process.pid}-${port}.jsonl`);
  const child: ChildProcess = spawn(python, [path.join(root, "scripts/smtp_sink.py"), String(port), file], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the SMTP sink did not start")), 15_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => reject(new Error(`the SMTP sink exited (${code}): is python3-aiosmtpd installed?`)));
  });
  const messages = (): Delivered[] =>
    existsSync(file)
      ? readFileSync(file, "utf8")
          .split("\n")
          .filter((line) => line.trim() !== "")
          .map((line) => JSON.parse(line) as Delivered)
      : [];
  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    async waitFor(to: string, subject: string) {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const found = messages().find((m) => m.to.includes(to) && m.subject === subject);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no mail "${subject}" to ${to}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },
    stop() {
      child.kill();
      rmSync(file, { force: true });
    },
  };
}

/** The first address in a mail's text body that starts with `prefix`. */
export function linkIn(mail: Delivered, prefix: string): string {
  const link = (mail.text ?? "").split(/\s+/).find((word) => word.startsWith(prefix));
  if (!link) throw new Error(`no ${prefix} link in: ${mail.text}`);
  return link;
}
