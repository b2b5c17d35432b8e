// Drives the page of a running `ralmspec serve` in Debian's Chromium, headless, through
// playwright-core (no downloaded browser): the page loads without a console error, a question
// gets its answer with sources, the timeline draws rounds, a forced rollback (fixed stride 8,
// no prefetch) is drawn as one, the race ends with identical answers, the server panels
// fill; screenshots at 1280 and 390 pixels wide go to OUT_DIR.
//
//   node page.mjs BASE_URL OUT_DIR
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, out] = process.argv.slice(2);
const QUESTIONS = [
  "Who wrote the novel Nineteen Eighty-Four?",
  "What is the capital of France?",
  "When did the Second World War end?",
  "Who painted the Mona Lisa?",
  "What is the largest planet in the Solar System?",
];
if (!base || !out) {
  console.error("usage: node page.mjs BASE_URL OUT_DIR");
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const problems = [];
const check = (ok, what) => {
  if (!ok) problems.push(what);
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("console", (m) => {
    if (m.type() === "error") problems.push("console error: " + m.text());
  });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.setDefaultTimeout(240_000);

  await page.goto(base + "/");
  await page.waitForSelector("body[data-ready=true]");
  check((await page.locator("#retriever option").count()) > 0, "the retrievers are listed");

  // Questions with the forced-rollback setting, until one rolls back (most do).
  await page.selectOption("#engine", "spec");
  await page.fill("#stride", "8");
  await page.fill("#prefetch", "0");
  await page.fill("#max-tokens", "32");
  let summary = "";
  for (const question of QUESTIONS) {
    await page.fill("#question", question);
    // Keyboard: the form submits with Enter on the button.
    await page.focus("#ask-button");
    await page.keyboard.press("Enter");
    await page.waitForFunction(
      () => document.querySelector("#summary").textContent.startsWith("done"),
    );
    summary = await page.textContent("#summary");
    console.log(`${question} → ${summary}`);
    if (!/ 0 rollbacks/.test(summary)) break;
  }
  const answer = await page.textContent("#answer");
  check(answer.trim().length > 0, `an answer: ${JSON.stringify(answer.slice(0, 80))}`);
  check((await page.locator("#answer .source").count()) > 0, "the answer's spans carry sources");
  const rounds = await page.locator("#timeline .round").count();
  check(rounds > 1, `the timeline shows rounds (${rounds})`);
  check((await page.locator("#timeline .step").count()) > 0, "the timeline shows strides");
  check((await page.locator("#timeline .retrieval").count()) > 0, "the timeline shows retriever calls");
  const rollbacks = Number((summary.match(/(\d+) rollbacks?/) || [0, 0])[1]);
  check(rollbacks > 0, `a question rolled back (${rollbacks} rollbacks)`);
  const marked = await page.locator("#timeline .round.has-rollback").count();
  check(marked === rollbacks, `each rollback's round is marked (${marked} of ${rollbacks})`);
  const rolledBack = await page.locator("#timeline .step.rolled-back").count();
  check(rolledBack >= rollbacks, `rolled-back strides are drawn (${rolledBack})`);

  // A source opens its passage.
  await page.locator("#answer .source").first().focus();
  await page.keyboard.press("Enter");
  await page.waitForSelector("#passage:not([hidden])");
  check((await page.textContent("#passage-text")).length > 0, "a source shows its passage");
  await page.screenshot({ path: `${out}/page-1280.png`, fullPage: true });
  await page.keyboard.press("Escape");

  // The race.
  await page.fill("#stride", "os3");
  await page.fill("#prefetch", "20");
  await page.click("#race-button");
  await page.waitForFunction(() => document.querySelector("#race-result").textContent !== "");
  const result = await page.textContent("#race-result");
  console.log("race: " + result);
  check(result.includes("✓ identical"), "the race ends with identical answers");
  check(
    (await page.textContent("#race-baseline .text")).length > 0,
    "the baseline's answer is shown",
  );

  // The panels have had time to poll at least twice.
  await page.waitForTimeout(4500);
  const peak = Number(await page.getAttribute("#panel-tokens", "data-peak"));
  check(peak > 0, `the tokens/s panel saw the race's tokens (peak ${peak.toFixed(1)}/s)`);
  await page.screenshot({ path: `${out}/page-1280-race.png`, fullPage: true });

  // Phone width.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  check(overflow <= 0, `no sideways scrolling at 390 px (${overflow} px too wide)`);
  await page.screenshot({ path: `${out}/page-390.png`, fullPage: true });
} finally {
  await browser.close();
}
if (problems.length) {
  console.error("problems:\n  " + problems.join("\n  "));
  process.exit(1);
}
