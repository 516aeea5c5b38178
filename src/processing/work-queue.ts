import { availableParallelism } from "node:os";
import { AppError } from "../errors.js";

/**
 * Bounds CPU-heavy image work: at most `concurrency` jobs run, at most `queueLimit` wait, and
 * anything beyond is refused at once with 503 `busy` and Retry-After, so memory stays flat under
 * any load instead of growing with a backlog.
 */
export class WorkQueue {
  readonly concurrency: number;
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    concurrency: number,
    private readonly queueLimit: number,
  ) {
    this.concurrency = concurrency > 0 ? concurrency : availableParallelism();
  }

  get depth(): number {
    return this.waiting.length;
  }

  get active(): number {
    return this.running;
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.queueLimit) {
        throw new AppError("busy", undefined, { headers: { "retry-after": "1" } });
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running += 1;
    }
    try {
      return await job();
    } finally {
      // Hand the slot straight to the next waiter, so `running` never dips and lets a newcomer jump the queue.
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    }
  }
}
