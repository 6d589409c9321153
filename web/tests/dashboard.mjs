// The dashboard in a real browser (Debian's Chromium, driven by
// playwright-core) against a real `weir coordinator`: tests/dashboard.rs
// starts the coordinator, builds the bundles and runs this script.
//
//   WEIR_URL           the coordinator, http://127.0.0.1:PORT
//   WEIR_BUNDLE        a bundle of a bounded keyed job with checkpoints
//   WEIR_TRAP_BUNDLE   a bundle whose operator traps (restart: none)
//   WEIR_SCREENSHOTS   where the pages' screenshots go
//   CHROMIUM           the browser (default /usr/bin/chromium)
//
// Every step waits for what the page shows, within a bound; the first
// that does not come fails the script with what was on the page.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const url = need("WEIR_URL");
const shots = need("WEIR_SCREENSHOTS");
// `local`: a `weir run` of examples/live (read-only API), else a
// coordinator that takes the two bundles.
const local = process.env.WEIR_MODE === "local";
const bundle = local ? "" : need("WEIR_BUNDLE");
const trapBundle = local ? "" : need("WEIR_TRAP_BUNDLE");
mkdirSync(shots, { recursive: true });

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set (tests/dashboard.rs sets it)`);
    process.exit(2);
  }
  return v;
}

function step(what) {
  console.log(`· ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu"],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
page.setDefaultTimeout(30_000);

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** Waits until `test(text of the locator)` holds. */
async function until(locator, test, what, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  let text = "";
  while (Date.now() < deadline) {
    text = (await locator.first().textContent({ timeout: 1000 }).catch(() => "")) ?? "";
    if (test(text)) return text;
    await page.waitForTimeout(200);
  }
  throw new Error(`${what}: not seen within ${timeout / 1000} s; last text: ${JSON.stringify(text.slice(0, 400))}`);
}

async function jobState(state, timeout = 60_000) {
  await until(page.locator(".job-head .badge"), (t) => t === state, `the job reaching ${state}`, timeout);
}

async function submitBundle(path, parallelism) {
  await page.goto(`${url}/#/submit`);
  const region = page.getByRole("region", { name: "Submit a bundle" });
  await region.getByLabel("Bundle file").setInputFiles(path);
  // Uploaded: the bundle is chosen for submission.
  await until(region.getByLabel("Bundle to submit"), (t) => t.includes("·"), "the uploaded bundle in the list");
  await page.waitForFunction(() => document.querySelector('select[aria-label="Bundle to submit"]')?.value !== "");
  if (parallelism) await region.getByLabel("Parallelism").fill(String(parallelism));
  await region.getByRole("button", { name: "Submit bundle" }).click();
  await page.waitForFunction(() => location.hash.startsWith("#/jobs/"));
  return decodeURIComponent(await page.evaluate(() => location.hash.split("/")[2]));
}

async function localRun() {
  step("the running job of `weir run`, from the printed address");
  await page.goto(`${url}/`);
  const jobs = page.getByRole("table", { name: "Jobs" });
  await until(jobs, (t) => t.includes("live") && t.includes("RUNNING"), "the job `live` running");
  await jobs.getByRole("link", { name: "live" }).click();
  await jobState("RUNNING");
  const sums = page.locator('[data-vertex="sums"]');
  await until(sums, (t) => /in [1-9][0-9.]*( k| M)?\/s/.test(t), "a non-zero input rate on `sums`");
  await until(sums, (t) => /wm /.test(t) && !t.includes("none yet"), "a watermark on `sums`");
  const cancel = page.getByRole("button", { name: "Cancel job" });
  if (!(await cancel.isDisabled()) || !(await cancel.getAttribute("title"))?.includes("read-only")) {
    throw new Error("a local run's API is read-only: its actions are off, saying why");
  }
  await shot("local");
}

async function coordinator() {
  step("overview");
  await page.goto(`${url}/#/`);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await until(page.getByRole("region", { name: "Cluster" }), (t) => /free slots/.test(t) && !t.includes("…"), "the cluster");

  step("a spec with a mistake gets its line marked");
  await page.goto(`${url}/#/submit`);
  const editor = page.getByLabel("Pipeline spec (YAML)");
  await editor.fill("name: broken\nsources:\n  - {id: events, type: nope}\nsinks: []\n");
  await until(page.getByLabel("Spec problems"), (t) => t.includes("line 3") && t.includes("nope"), "the problem at line 3");
  await page.locator(".editor .lines .bad", { hasText: "3" }).waitFor();
  await shot("submit");

  step("submit a bundle through the page");
  const job = await submitBundle(bundle, 2);
  await jobState("RUNNING");

  step("the graph shows non-zero rates and a watermark");
  const count = page.locator('[data-vertex="count"]');
  await until(count, (t) => /in [1-9][0-9.]*( k| M)?\/s/.test(t), "a non-zero input rate on `count`");
  await until(count, (t) => /wm /.test(t) && !t.includes("none yet"), "a watermark on `count`");
  await count.click();
  const panel = page.getByRole("region", { name: "Vertex count details" });
  await until(panel.getByRole("table", { name: "Subtasks of count" }), (t) => /Subtask/.test(t), "the subtasks of `count`");
  if ((await panel.getByRole("table", { name: "Subtasks of count" }).locator("tbody tr").count()) !== 2) throw new Error("`count` at parallelism 2 shows 2 subtasks");
  await until(
    panel.getByRole("table", { name: "Subtasks of count" }),
    (t) => t.includes("Slowest channel") && /(none|→ \S+\[\d+\] \d+ ms\/s)/.test(t),
    "each subtask's slowest channel downstream",
  );
  await panel.getByRole("figure", { name: "Records per second" }).waitFor();
  // A few more samples in the charts for the screenshot.
  await page.waitForTimeout(6000);
  await shot("job");

  step("trigger a savepoint, confirmed");
  await page.getByRole("button", { name: "Trigger savepoint" }).click();
  const dialog = page.getByRole("dialog", { name: "Take a savepoint?" });
  await dialog.getByRole("button", { name: "Take savepoint" }).click();
  const first = await until(
    page.getByRole("status"),
    (t) => t.startsWith("Savepoint completed:"),
    "the savepoint's folder",
    60_000,
  );

  step("checkpoints: history and one checkpoint per subtask");
  await page.getByRole("link", { name: "Checkpoints" }).click();
  const history = page.getByRole("table", { name: "Checkpoint history" });
  await until(history, (t) => t.includes("COMPLETED") && t.includes("savepoint"), "completed checkpoints and the savepoint");
  await history.getByRole("button", { name: /^Details of checkpoint/ }).last().click();
  const detail = page.getByRole("region", { name: /per subtask$/ });
  await until(detail, (t) => t.includes("count") && t.includes("Sync snapshot"), "the parts of a checkpoint");
  await page.getByRole("figure", { name: "Duration and alignment, ms" }).waitFor();
  await shot("checkpoints");

  step("state: names, keys per key group, one key");
  await page.getByRole("link", { name: "State" }).click();
  const state = page.getByRole("region", { name: "State of count" });
  await until(state, (t) => /value .count./.test(t), "the state `count`");
  await state.getByLabel("Key to look up in count").fill("5");
  await state.getByRole("button", { name: "Look up" }).click();
  await until(state.getByLabel("State of key 5"), (t) => /value .count./.test(t) && /\d/.test(t), "key 5's count");
  await shot("state");

  step("stop with a savepoint: the job finishes");
  await page.getByRole("link", { name: "Graph" }).click();
  await page.getByRole("button", { name: "Stop with savepoint" }).click();
  await page.getByRole("dialog", { name: "Stop with a savepoint?" }).getByRole("button", { name: "Stop job" }).click();
  await until(
    page.getByRole("status"),
    (t) => t.startsWith("Savepoint completed:") && t !== first,
    "the stop's savepoint",
    60_000,
  );
  await jobState("FINISHED", 60_000);

  step("the exception of a trapping operator, with the guest's message");
  await submitBundle(trapBundle);
  await jobState("FAILED", 60_000);
  await page.getByRole("link", { name: "Exceptions" }).click();
  const root = page.getByRole("article", { name: "Root cause" });
  await until(root, (t) => t.includes("flaky-count traps on value") && t.includes("count"), "the guest's own message");
  await shot("exceptions");

  step("the overview lists both jobs");
  await page.goto(`${url}/#/`);
  const jobs = page.getByRole("table", { name: "Jobs" });
  await until(jobs, (t) => t.includes("FINISHED") && t.includes("FAILED"), "both jobs");
  await shot("overview");

  step("a large monitor");
  await page.setViewportSize({ width: 2200, height: 1200 });
  await page.goto(`${url}/#/jobs/${encodeURIComponent(job)}`);
  await page.locator('[data-vertex="count"]').waitFor();
  await shot("job-wide");
}

try {
  if (local) await localRun();
  else await coordinator();
  if (problems.length) throw new Error(problems.join("\n"));
  console.log("dashboard: every step passed");
} catch (e) {
  console.error(`dashboard test failed at ${page.url()}: ${e.message}`);
  await shot("failure").catch(() => {});
  console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
