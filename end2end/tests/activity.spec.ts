import { test, expect, devices } from "@playwright/test";
import { hydrated, signIn, signUp } from "./helpers";
import { E2E_PORT } from "./server";

// A sign-in from another device reaches the first browser's account page
// through the event pipeline (outbox, relay, Redis Streams, the activity
// consumer): a second or so after it happened, so the page is reloaded until
// the entry is there, as a person would.
for (const js of [true, false]) {
  test(`a sign-in from a phone shows as a new sign-in on the account page (${js ? "with" : "without"} JavaScript)`, async ({ browser }) => {
    const laptop = await browser.newContext({ javaScriptEnabled: js, baseURL: `http://127.0.0.1:${E2E_PORT}` });
    const phone = await browser.newContext({ ...devices["Pixel 7"], baseURL: `http://127.0.0.1:${E2E_PORT}` });
    try {
      const page = await laptop.newPage();
      const username = await signUp(page, { js });
      await page.goto("/account");
      await expect(page.getByRole("heading", { name: "Security activity" })).toBeVisible();

      const mobile = await phone.newPage();
      await signIn(mobile, username);

      await expect(async () => {
        await page.goto("/account");
        await expect(page.getByTestId("activity")).toContainText("New sign-in from Chrome on Android", { timeout: 1_000 });
      }).toPass({ timeout: 30_000 });
      await expect(page.getByTestId("activity")).toContainText("127.0.0.1");
      if (js) await hydrated(page);
    } finally {
      await phone.close();
      await laptop.close();
    }
  });
}
