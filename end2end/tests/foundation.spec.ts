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

test("static assets and health endpoints are served", async ({ request }) => {
  expect((await request.get("/healthz")).status()).toBe(200);
  expect((await request.get("/readyz")).status()).toBe(200);
  expect((await request.get("/pkg/folio.css")).status()).toBe(200);
  expect((await request.get("/pkg/folio.wasm")).status()).toBe(200);
});
