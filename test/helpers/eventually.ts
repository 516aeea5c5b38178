import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Waits for a condition that another process or a background task makes true, failing with
 * `what` if it never does. The deadline is a safety net against hanging, not a speed assertion.
 */
export async function eventually(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`never happened: ${what}`);
    await sleep(20);
  }
}
