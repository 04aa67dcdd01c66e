import { test, expect } from "@playwright/test";
import { ChildProcess, execFileSync } from "node:child_process";
import path from "node:path";
import { E2E_PORT, startInstance } from "./server";
import { hydrated, signUp } from "./helpers";

// One more Folio instance, on the Patroni cluster of deploy/postgres-ha
// (scripts/test.sh starts it with scripts/pg-ha.sh). The leader dies while
// a person is editing: the editor says saving is paused, keeps what they
// typed, and saves it when they send it again after the promotion.
const HA_DIR = process.env.FOLIO_E2E_HA_DIR;
const PRIMARY = process.env.FOLIO_E2E_HA_PRIMARY;
const REPLICA = process.env.FOLIO_E2E_HA_REPLICA;
const PORT = E2E_PORT + 3;
const SCRIPT = path.resolve(__dirname, "../../scripts/pg-ha.sh");

// scripts/pg-ha.sh COMMAND DIR [NODE]
function pgHa(command: string, ...rest: string[]): string {
  return execFileSync("bash", [SCRIPT, command, HA_DIR!, ...rest], { encoding: "utf8" }).trim();
}

test.describe("when the database leader dies", () => {
  test.skip(!HA_DIR || !PRIMARY || !REPLICA, "needs the Patroni cluster that scripts/test.sh starts");
  test.use({ baseURL: `http://127.0.0.1:${PORT}` });

  let server: ChildProcess | undefined;
  test.beforeAll(async () => {
    test.setTimeout(120_000);
    const db = `${process.env.FOLIO_E2E_DB ?? "folio_e2e"}_ha`;
    server = await startInstance(PORT, {
      DATABASE_URL: `${PRIMARY}/${db}`,
      DATABASE_REPLICA_URLS: `${REPLICA}/${db}`,
      FOLIO_REDIS_PREFIX: `e2e-ha:${db}:`,
    });
  });
  test.afterAll(() => {
    server?.kill();
  });

  test("the editor says saving is paused, keeps the typing, and saves it after the promotion", async ({ page }) => {
    test.setTimeout(120_000);
    const username = await signUp(page);
    await page.goto("/settings/profile");
    await hydrated(page);
    await page.getByLabel("Display name").fill("Patient Person");
    await page.getByLabel("Bio").fill("Typed while the database changed over.");

    const leader = pgHa("leader");
    pgHa("kill", leader.replace("node", ""));
    await page.getByTestId("save").click();
    const alert = page.getByTestId("form-error");
    await expect(alert).toContainText("Saving is paused");
    await expect(alert).toContainText("kept");
    await expect(page.getByLabel("Display name")).toHaveValue("Patient Person");
    await expect(page.getByLabel("Bio")).toHaveValue("Typed while the database changed over.");

    // Sent again until the new leader takes it (Patroni promotes within
    // about 20 s), as a person would after reading the message.
    await expect(async () => {
      await page.getByTestId("save").click();
      await expect(page.getByTestId("saved")).toBeVisible({ timeout: 2_000 });
    }).toPass({ timeout: 60_000, intervals: [2_000] });
    expect(pgHa("leader")).not.toBe(leader);
    await page.goto(`/u/${username}`);
    await expect(page.getByTestId("display-name")).toHaveText("Patient Person");
    await expect(page.getByTestId("bio")).toHaveText("Typed while the database changed over.");
  });
});
