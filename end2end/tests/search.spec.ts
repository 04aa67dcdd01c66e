import { test, expect, Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { hydrated } from "./helpers";
import { E2E_PORT, PASSWORD } from "./server";

// People search: the plain form without JavaScript, search as you type with
// it. Profiles are made through the API (sign-up, then an edit), so they
// reach the search index the real way: outbox, relay, Redis Streams, the
// search consumer.

const BASE = `http://127.0.0.1:${E2E_PORT}`;

/** A word no other test's profiles contain: every query of this file has it. */
const TOKEN = `zq${Date.now().toString(36).slice(-5)}${process.pid % 100}`.replace(/[^a-z0-9]/g, "");

async function api(fn: string, form: Record<string, string>, cookie?: string): Promise<Response> {
  return fetch(`${BASE}/api/${fn}`, {
    method: "POST",
    body: new URLSearchParams(form),
    headers: cookie ? { cookie } : {},
    redirect: "manual",
  });
}

/** Signs `username` up and, with `edit`, saves that profile. */
async function person(username: string, edit?: { display_name: string; bio?: string; location?: string }) {
  const registered = await api("register", { username, email: `${username}@example.com`, password: PASSWORD });
  expect(registered.status, await registered.clone().text()).toBe(200);
  if (!edit) return;
  const cookie = registered.headers.get("set-cookie")!.split(";")[0];
  const saved = await api(
    "update_profile",
    {
      display_name: edit.display_name,
      bio: edit.bio ?? "",
      avatar_url: "",
      location: edit.location ?? "",
      website: "",
      expected_version: "1",
    },
    cookie,
  );
  expect(saved.status, await saved.clone().text()).toBe(200);
}

/** The usernames `search_people` answers for `q` (the index, as the page sees it). */
async function found(q: string): Promise<string[]> {
  const response = await api("search_people", { q });
  const page = await response.json();
  return (page.people ?? []).map((p: { username: string }) => p.username);
}

/** How many people `q` finds, following the pages. */
async function total(q: string): Promise<number> {
  let count = 0;
  let after: string | undefined;
  for (;;) {
    const response = await api("search_people", after ? { q, after } : { q });
    const page = await response.json();
    count += (page.people ?? []).length;
    if (!page.next) return count;
    after = page.next;
  }
}

const ADA = `${TOKEN}_ada`;
const PEOPLE = 24;

test.beforeAll(async () => {
  await person(ADA, {
    display_name: "Ada Lovelace",
    bio: `<b>Analytical</b> engines & <script>alert(1)</script> ${TOKEN}`,
    location: "London",
  });
  for (let i = 0; i < PEOPLE; i++) await person(`${TOKEN}_p${i}`);
  // The consumer runs in the server: wait until every profile is indexed.
  await expect.poll(() => total(TOKEN), { timeout: 60_000 }).toBe(PEOPLE + 1);
  await expect.poll(async () => (await found(`"ada lovelace" ${TOKEN}`)).length, { timeout: 60_000 }).toBe(1);
});

/** The usernames listed on the page, in order. */
async function listed(page: Page): Promise<string[]> {
  const links = await page.locator(".person-username").allTextContents();
  return links.map((text) => text.replace(/^@/, ""));
}

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("search and page through the results with the plain form", async ({ page }) => {
    await page.goto("/people");
    await page.getByTestId("people-q").fill(TOKEN);
    await page.getByTestId("people-q").press("Enter");
    await expect(page).toHaveURL(new RegExp(`/people\\?q=${TOKEN}$`));
    const first = await listed(page);
    expect(first).toHaveLength(20);
    await expect(page.getByTestId("prev")).toHaveCount(0);

    await page.getByTestId("next").click();
    await expect(page).toHaveURL(/after=/);
    const second = await listed(page);
    expect(second).toHaveLength(PEOPLE + 1 - 20);
    expect(new Set([...first, ...second]).size).toBe(PEOPLE + 1);
    await expect(page.getByTestId("next")).toHaveCount(0);

    await page.getByTestId("prev").click();
    expect(await listed(page)).toEqual(first);
  });

  test("the header's search box, a bio's HTML shown as text, nobody found", async ({ page }) => {
    await page.goto("/");
    await page.getByTestId("header-search").fill(`${TOKEN} ada`);
    await page.getByTestId("header-search").press("Enter");
    await expect(page).toHaveURL(/\/people\?q=/);
    await expect(page.locator(".person")).toHaveCount(1);
    const bio = page.locator(".person-bio");
    await expect(bio).toContainText("<b>Analytical</b> engines & <script>alert(1)</script>");
    await expect(bio.locator("b, script")).toHaveCount(0);
    await expect(page.locator(".person-name mark")).toHaveText("Ada");

    await page.goto(`/people?q=${TOKEN}+nobodyhere`);
    await expect(page.getByTestId("result-count")).toHaveText(`No one matches “${TOKEN} nobodyhere”.`);
  });

  test("a forged page link and an overlong query are explained, not failures", async ({ page }) => {
    const forged = await page.goto(`/people?q=${TOKEN}&after=w1.2.3`);
    expect(forged!.status()).toBe(400);
    await expect(page.getByTestId("result-count")).toContainText("Start the search again");
    const long = await page.goto(`/people?q=${"a".repeat(101)}`);
    expect(long!.status()).toBe(422);
    await expect(page.getByTestId("result-count")).toContainText("at most 100 characters");
  });
});

test.describe("with JavaScript", () => {
  test("results follow the typing, and the URL follows the query", async ({ page }) => {
    await page.goto("/people");
    await hydrated(page);
    const input = page.getByTestId("people-q");
    // Slowly: a search may go out per pause; the last one is what shows.
    await input.pressSequentially(`${TOKEN} ad`, { delay: 250 });
    await expect(page.locator(".person")).toHaveCount(1);
    await expect(page.locator(".person-name mark")).toHaveText("Ada");
    await expect(page).toHaveURL(new RegExp(`/people\\?q=${TOKEN}\\+ad$`));
    // Quickly: one search.
    await input.fill("");
    await input.pressSequentially(`${TOKEN} p1`, { delay: 20 });
    await expect(page.locator(".person")).toHaveCount(11); // p1, p10…p19
    await input.fill(`${TOKEN} nobodyhere`);
    await expect(page.getByTestId("result-count")).toHaveText(`No one matches “${TOKEN} nobodyhere”.`);
    await expect(page.locator(".person")).toHaveCount(0);
  });

  test("the back button returns to the previous search", async ({ page }) => {
    await page.goto("/people");
    await hydrated(page);
    const input = page.getByTestId("people-q");
    await input.fill(`${TOKEN} ada`);
    await expect(page).toHaveURL(new RegExp(`q=${TOKEN}\\+ada$`));
    await expect(page.locator(".person")).toHaveCount(1);
    await input.fill(`${TOKEN} p2`);
    await expect(page).toHaveURL(new RegExp(`q=${TOKEN}\\+p2$`));
    await expect(page.locator(".person")).toHaveCount(5); // p2, p20…p23

    await page.goBack();
    await expect(page).toHaveURL(new RegExp(`q=${TOKEN}\\+ada$`));
    await expect(input).toHaveValue(`${TOKEN} ada`);
    await expect(page.locator(".person")).toHaveCount(1);
    await page.goForward();
    await expect(input).toHaveValue(`${TOKEN} p2`);
    await expect(page.locator(".person")).toHaveCount(5);
  });

  test("keyboard only: arrows move through the results, Enter opens one", async ({ page }) => {
    await page.goto(`/people?q=${TOKEN}+p2`);
    await hydrated(page);
    const input = page.getByTestId("people-q");
    await input.focus();
    await page.keyboard.press("ArrowDown");
    await expect(page.locator("#person-0")).toBeFocused();
    await page.keyboard.press("ArrowDown");
    await expect(page.locator("#person-1")).toBeFocused();
    await page.keyboard.press("ArrowUp");
    await expect(page.locator("#person-0")).toBeFocused();
    await page.keyboard.press("ArrowUp");
    await expect(input).toBeFocused();
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowDown");
    const second = (await page.locator("#person-1 .person-username").textContent())!.replace(/^@/, "");
    await page.keyboard.press("Enter");
    await expect(page).toHaveURL(new RegExp(`/u/${second}$`));
  });

  test("an answer that arrives late never replaces a newer one", async ({ page }) => {
    await page.goto("/people");
    await hydrated(page);
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
    let firstSent!: () => void;
    const firstSeen = new Promise<void>((resolve) => (firstSent = resolve));
    let calls = 0;
    await page.route("**/api/search_people", async (route) => {
      calls += 1;
      if (calls === 1) {
        firstSent();
        await firstHeld;
      }
      await route.continue();
    });
    const input = page.getByTestId("people-q");
    await input.fill(`${TOKEN} ada`);
    await firstSeen;
    await input.fill(`${TOKEN} p2`);
    await expect(page.locator(".person")).toHaveCount(5);

    const late = page.waitForResponse((r) => r.url().includes("search_people") && (r.request().postData() ?? "").includes("ada"));
    releaseFirst();
    await (await late).finished();
    // Let the island handle it (or drop it) before looking.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 100))));
    await expect(page.locator(".person")).toHaveCount(5);
    await expect(input).toHaveValue(`${TOKEN} p2`);
    await expect(page).toHaveURL(new RegExp(`q=${TOKEN}\\+p2$`));
  });

  test("what is typed before the page is interactive is searched once it is", async ({ page }) => {
    let releaseWasm!: () => void;
    const wasmHeld = new Promise<void>((resolve) => (releaseWasm = resolve));
    await page.route("**/*.wasm", async (route) => {
      await wasmHeld;
      await route.continue();
    });
    await page.goto("/people", { waitUntil: "domcontentloaded" });
    const input = page.getByTestId("people-q");
    await input.pressSequentially(`${TOKEN} ada`);
    releaseWasm();
    await hydrated(page);
    await expect(input).toHaveValue(`${TOKEN} ada`);
    await expect(page.locator(".person")).toHaveCount(1);
    await expect(page).toHaveURL(new RegExp(`q=${TOKEN}\\+ada$`));
  });
});

test("the people page passes axe's WCAG 2.2 AA checks", async ({ page }) => {
  await page.goto(`/people?q=${TOKEN}`);
  await hydrated(page);
  const results = await new AxeBuilder({ page })
    .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"])
    .analyze();
  expect(results.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(", ")})`)).toEqual([]);
  await page.goto(`/people?q=${TOKEN}+nobodyhere`);
  const empty = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag22aa"]).analyze();
  expect(empty.violations.map((v) => v.id)).toEqual([]);
});
