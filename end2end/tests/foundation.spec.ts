import { test, expect } from "@playwright/test";
import { hydrated } from "./helpers";

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the home page is rendered on the server", async ({ page }) => {
    await page.goto("/");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText("Your public profile, fast everywhere.");
    await expect(page.getByRole("link", { name: "Sign in" })).toBeVisible();
    await expect(page).toHaveTitle("Folio");
  });

  test("the toggle does nothing before hydration", async ({ page }) => {
    await page.goto("/");
    await page.getByTestId("how-toggle").click();
    await expect(page.getByTestId("how-it-works")).toHaveCount(0);
  });
});

test("the page hydrates and becomes interactive", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("how-toggle").click();
  await expect(page.getByTestId("how-it-works")).toBeVisible();
  await page.getByTestId("how-toggle").click();
  await expect(page.getByTestId("how-it-works")).toHaveCount(0);
  expect(errors).toEqual([]);
});

test("the Postgres-backed user count appears", async ({ page }) => {
  await page.goto("/");
  await expect(page.getByTestId("user-count")).toHaveText(/^\d+ (people have|person has) a Folio\.$/);
});

test("an unknown path shows the 404 page with status 404", async ({ page }) => {
  const response = await page.goto("/no/such/page");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
});

test("health endpoints answer", async ({ request }) => {
  expect((await request.get("/healthz")).status()).toBe(200);
  const ready = await request.get("/readyz");
  expect(ready.status()).toBe(200);
  expect(await ready.json()).toEqual({ status: "ok" });
});

test("hashed static assets are cached forever, pages are not", async ({ request }) => {
  const home = await request.get("/");
  expect(home.headers()["cache-control"]).toBe("no-store");
  const html = await home.text();
  const css = html.match(/href="(\/pkg\/folio\.[A-Za-z0-9_-]+\.css)"/)?.[1];
  const js = html.match(/(\/pkg\/folio\.[A-Za-z0-9_-]+\.js)/)?.[1];
  const wasm = html.match(/(\/pkg\/folio\.[A-Za-z0-9_-]+\.wasm)/)?.[1];
  for (const asset of [css, js, wasm]) {
    expect(asset, "hashed asset name in the page").toBeTruthy();
    const response = await request.get(asset!, { headers: { "accept-encoding": "br, gzip" } });
    expect(response.status()).toBe(200);
    expect(response.headers()["cache-control"]).toBe("public, max-age=31536000, immutable");
  }
});

test("the hydrated app runs with the Content-Security-Policy enforced", async ({ page }) => {
  const violations: string[] = [];
  page.on("console", (message) => {
    if (/Content[- ]Security[- ]Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  const response = await page.goto("/signup");
  const csp = response?.headers()["content-security-policy"] ?? "";
  expect(csp).toMatch(/script-src 'self' 'nonce-[^']+' 'wasm-unsafe-eval'/);
  expect(csp).not.toContain("unsafe-inline");
  // The release build runs as production: no dev-reload websocket allowed.
  expect(csp).not.toContain("ws:");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(response?.headers()["x-content-type-options"]).toBe("nosniff");
  expect(response?.headers()["referrer-policy"]).toBe("strict-origin-when-cross-origin");
  await hydrated(page);
  await page.getByLabel("Username").fill("ab");
  await expect(page.getByTestId("username-error")).not.toHaveText("");
  expect(violations).toEqual([]);
});
