import { test, expect } from "@playwright/test";
import { ChildProcess } from "node:child_process";
import { E2E_PORT, metric, startInstance } from "./server";
import { hydrated, signUp } from "./helpers";

// One more Folio instance, on a primary whose streaming replica applies
// every commit seconds late (scripts/test.sh starts the pair). Anonymous
// readers may see the replica's older data; the person who just saved must
// not, with JavaScript or without.
const PRIMARY = process.env.FOLIO_E2E_REPLICA_PRIMARY;
const REPLICA = process.env.FOLIO_E2E_REPLICA;
const LAG_MS = Number(process.env.FOLIO_E2E_REPLICA_LAG_MS ?? 5000);
const PORT = E2E_PORT + 2;
const LAGGING = 'folio_replica_fallbacks_total{reason="lagging"}';
const REPLICA_READS = 'folio_db_reads_total{target="replica"}';

test.describe("with a lagging read replica", () => {
  test.skip(!PRIMARY || !REPLICA, "needs the primary and replica that scripts/test.sh starts");
  test.use({ baseURL: `http://127.0.0.1:${PORT}` });

  let server: ChildProcess | undefined;
  test.beforeAll(async () => {
    test.setTimeout(120_000);
    const db = `${process.env.FOLIO_E2E_DB ?? "folio_e2e"}_replica`;
    server = await startInstance(PORT, {
      DATABASE_URL: `${PRIMARY}/${db}`,
      DATABASE_REPLICA_URLS: `${REPLICA}/${db}`,
      FOLIO_REDIS_PREFIX: `e2e-replica:${db}:`,
    });
    // The replica has the new database (and its tables) only LAG_MS after
    // the instance made them: wait until it answers a public read.
    const deadline = Date.now() + 60_000;
    while ((await metric(PORT, REPLICA_READS)) === 0) {
      expect(Date.now(), "the replica never served a read").toBeLessThan(deadline);
      await fetch(`http://127.0.0.1:${PORT}/api/count_users`, { method: "POST" });
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });
  test.afterAll(() => {
    server?.kill();
  });

  for (const js of [true, false]) {
    test.describe(js ? "with JavaScript" : "without JavaScript", () => {
      test.use({ javaScriptEnabled: js });

      test("the saved profile shows the new values at once", async ({ page }) => {
        const username = await signUp(page, { js });
        await page.goto("/settings/profile");
        if (js) await hydrated(page);
        await page.getByLabel("Display name").fill("Lagging Lovelace");
        await page.getByLabel("Bio").fill("Saved while the replica lags.");
        const lagging = await metric(PORT, LAGGING);

        await page.getByTestId("save").click();
        const savedAt = Date.now();
        await expect(page.getByTestId("saved")).toBeVisible();
        await expect(page.getByLabel("Display name")).toHaveValue("Lagging Lovelace");
        await page.goto(`/u/${username}`);
        await expect(page.getByTestId("display-name")).toHaveText("Lagging Lovelace");
        await expect(page.getByTestId("bio")).toHaveText("Saved while the replica lags.");
        await page.reload();
        await expect(page.getByTestId("display-name")).toHaveText("Lagging Lovelace");

        // All of it inside the lag: the replica had not replayed the save,
        // and the writer's reads went to the primary because of it.
        expect(Date.now() - savedAt).toBeLessThan(LAG_MS);
        expect(await metric(PORT, LAGGING)).toBeGreaterThan(lagging);
      });
    });
  }
});
