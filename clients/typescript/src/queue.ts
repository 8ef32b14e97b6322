/**
 * A push-driven AsyncIterable: the request side of a client or bidi stream. `push` adds a
 * value, `close` ends the iteration once the values pushed before it are consumed. Values
 * pushed after the consumer went away (the call failed) are dropped: `push` returns false.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private values: T[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(value: T): boolean {
    if (this.closed) return false;
    this.values.push(value);
    this.notify();
    return true;
  }

  close(): void {
    this.closed = true;
    this.notify();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    try {
      for (;;) {
        if (this.values.length > 0) {
          yield this.values.shift() as T;
        } else if (this.closed) {
          return;
        } else {
          await new Promise<void>((resolve) => {
            this.wake = resolve;
          });
        }
      }
    } finally {
      // The consumer stopped (or the queue ran dry after close): nothing more goes out.
      this.closed = true;
      this.values = [];
    }
  }
}

/** Resolves after `ms`, or at once (without rejecting) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}
