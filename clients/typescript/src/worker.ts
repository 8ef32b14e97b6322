/**
 * A worker: claims tasks into free slots (ClaimTask long-polls) and runs each with a
 * handler, keeping one RunTask stream per task.
 *
 *     const worker = new Worker(async (ctx) => {
 *       ctx.progress(0.5);
 *       ctx.log("half way\n");
 *       ctx.output("result");
 *       ctx.progress(1);
 *       ctx.success(true);           // the completion rule: progress 1 and success true
 *       return { exitCode: 0 };
 *     });
 *     const stop = new AbortController();
 *     process.once("SIGTERM", () => stop.abort());
 *     await worker.run(stop.signal);  // returns once stopped and every task handed back
 *
 * Up the stream go log text, progress, output and the verdict: progress is coalesced (only
 * the latest value goes out, at most every 0.5 s), log text flushed every 0.5 s or 8 KiB,
 * output and success sent at once, and a heartbeat when nothing else went out for a third
 * of the lease's ttl. Down come acknowledgements, lease renewals and instructions: CANCEL
 * (the task or its job was canceled or paused) and STOP (the lease is lost) abort
 * `ctx.signal`; after a CANCEL the handler's exit is still reported, after a STOP nothing is.
 * Stopping the worker aborts every handler too and hands the tasks back (queued again,
 * unfailed). A stream broken by a server restart is reopened with the same lease for up
 * to one ttl.
 */

import { Code, ConnectError } from "@connectrpc/connect";
import { durationMs } from "@bufbuild/protobuf/wkt";

import { JobtaskClient } from "./client.js";
import { workerConfig, type WorkerConfig, type WorkerOptions } from "./config.js";
import type { Job } from "./gen/jobtask/v1/job_pb.js";
import { TaskStatus, type JobTask } from "./gen/jobtask/v1/job_task_pb.js";
import { Instruction, type TaskAssignment } from "./gen/jobtask/v1/task_service_pb.js";
import { sleep } from "./queue.js";
import type { ExitReport, TaskStream } from "./task-stream.js";

/** Why a handler's `ctx.signal` was aborted. */
export type StopKind = "cancel" | "stop" | "shutdown";

/** The abort reason of `ctx.signal`. `kind`: "cancel" (the task or its job was canceled
 * or paused: stop politely), "stop" (the lease was lost: stop at once), "shutdown" (the
 * worker is stopping: the task will be handed back). */
export class TaskStopped extends Error {
  readonly kind: StopKind;
  constructor(kind: StopKind, message: string) {
    super(message);
    this.name = "TaskStopped";
    this.kind = kind;
  }
}

export interface TaskContext {
  readonly assignment: TaskAssignment;
  readonly task: JobTask;
  readonly job: Job;
  /** A token for the task's own process: read its job, update its task, create child tasks. */
  readonly taskToken: string;
  /** This worker's slot for the task, 0-based. */
  readonly slot: number;
  readonly config: WorkerConfig;
  /** Aborted (with a TaskStopped reason) on CANCEL, STOP or worker shutdown. */
  readonly signal: AbortSignal;
  /** Fraction done, 0..1 (coalesced: only the latest value between sends goes out). */
  progress(fraction: number): void;
  /** The task's output (sent at once). */
  output(text: string): void;
  /** The verdict (sent at once); true completes the task only with progress 1. */
  success(verdict: boolean): void;
  /** Appended to the task's log. */
  log(text: string): void;
}

/** How the task's process ended. Nothing returned: exit code 0; a throw: exit code 1. */
export interface TaskExit {
  exitCode?: number;
  signal?: number;
}

export type TaskHandler = (ctx: TaskContext) => Promise<TaskExit | void>;

export type Logger = (line: string) => void;

const defaultLogger: Logger = (line) => {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
};

const DEFAULT_TTL_MS = 30_000;
const LOG_FLUSH_MS = 500;
const LOG_FLUSH_BYTES = 8192;
const MAX_PENDING_LOG = 4 * 1024 * 1024;
const MAX_BACKOFF_MS = 5000;
// The lease is gone (expired, or the task given to another worker): stop at once.
const LOST_CODES = new Set([Code.FailedPrecondition, Code.NotFound]);

export interface WorkerRunOptions extends WorkerOptions {
  /** Where the worker's own messages go; default stderr with a timestamp. */
  logger?: Logger;
  /** A client to use (default: one made from the options and JOBTASK_* variables). */
  client?: JobtaskClient;
}

export class Worker {
  readonly config: WorkerConfig;
  readonly client: JobtaskClient;
  private readonly handler: TaskHandler;
  private readonly logger: Logger;
  private readonly ownClient: boolean;
  private readonly freeSlots: number[];
  private readonly runs = new Map<number, TaskRun>();
  private readonly running = new Set<Promise<void>>();
  private slotFreed: (() => void) | undefined;

  constructor(handler: TaskHandler, options: WorkerRunOptions = {}) {
    this.handler = handler;
    this.config = workerConfig(options);
    this.logger = options.logger ?? defaultLogger;
    this.ownClient = options.client === undefined;
    this.client = options.client ?? new JobtaskClient(this.config);
    this.freeSlots = Array.from({ length: this.config.slots }, (_, i) => i);
  }

  /** Claims and runs tasks until `signal` aborts; then stops every running handler, hands
   * its task back and resolves. */
  async run(signal: AbortSignal): Promise<void> {
    const c = this.config;
    this.logger(
      `worker ${c.workerId} on ${c.nodeName}: ${c.slots} slot(s), tasks at ${c.tasksAddr}`,
    );
    try {
      await this.claimUntil(signal);
    } finally {
      for (const run of this.runs.values()) run.interrupt();
      await Promise.allSettled(this.running);
      if (this.ownClient) this.client.close();
    }
    this.logger(`worker ${c.workerId} stopped`);
  }

  private async claimUntil(signal: AbortSignal): Promise<void> {
    let backoff = 200;
    while (!signal.aborted) {
      if (this.freeSlots.length === 0) {
        await new Promise<void>((resolve) => {
          this.slotFreed = resolve;
          signal.addEventListener("abort", () => resolve(), { once: true });
        });
        this.slotFreed = undefined;
        continue;
      }
      let assignments: TaskAssignment[];
      try {
        // Stopping abandons the long poll; a task the server handed out in that instant
        // goes back to the queue when its lease expires.
        assignments = await this.client.claim(
          {
            workerId: this.config.workerId,
            nodeName: this.config.nodeName,
            ramKib: BigInt(this.config.ramKib),
            cores: this.config.cores,
            freeSlots: this.freeSlots.length,
            tags: this.config.tags,
          },
          {
            waitSeconds: this.config.claimWaitSeconds,
            maxTasks: this.freeSlots.length,
            signal,
          },
        );
      } catch (err) {
        if (signal.aborted) return;
        const error = ConnectError.from(err);
        this.logger(`claim failed: ${error.message} (retrying in ${backoff} ms)`);
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        continue;
      }
      backoff = 200;
      for (const assignment of assignments) this.start(assignment);
    }
  }

  private start(assignment: TaskAssignment): void {
    const slot = this.freeSlots.shift();
    if (slot === undefined) throw new Error("claimed more tasks than free slots");
    const run = new TaskRun(this.client, this.config, this.handler, assignment, slot, this.logger);
    this.runs.set(slot, run);
    this.logger(
      `task ${run.taskUuid} of job ${assignment.job?.uuid}: claimed into slot ${slot} ` +
        `(script ${assignment.job?.script})`,
    );
    const running: Promise<void> = run
      .run()
      .then((decided) => {
        if (decided) this.logger(`task ${run.taskUuid}: ${statusName(decided.status)}`);
      })
      .catch((err: unknown) => {
        this.logger(`task ${run.taskUuid}: the worker failed running it: ${String(err)}`);
      })
      .finally(() => {
        this.runs.delete(slot);
        this.freeSlots.push(slot);
        this.freeSlots.sort((a, b) => a - b);
        this.running.delete(running);
        this.slotFreed?.();
      });
    this.running.add(running);
  }
}

export function statusName(status: TaskStatus): string {
  return (TaskStatus[status] ?? String(status)).toLowerCase();
}

/** One claimed task: its handler, its RunTask stream, and what flows between them. */
class TaskRun {
  readonly taskUuid: string;
  private readonly stream: TaskStream;
  private readonly stopper = new AbortController();
  private ttlMs: number;
  private lastSend = Date.now();
  private firstPending: number | undefined;
  private progress: number | undefined;
  private output: string | undefined;
  private success: boolean | undefined;
  private logChunks: string[] = [];
  private logBytes = 0;
  private droppedBytes = 0;
  private handingBack = false;
  private lost = false;
  private finished = false;

  constructor(
    private readonly client: JobtaskClient,
    private readonly config: WorkerConfig,
    private readonly handler: TaskHandler,
    private readonly assignment: TaskAssignment,
    private readonly slot: number,
    private readonly logger: Logger,
  ) {
    const task = assignment.task;
    const lease = assignment.lease;
    if (!task || !lease || !assignment.job) {
      throw new Error("the claim answered an assignment without task, job or lease");
    }
    this.taskUuid = task.uuid;
    const ttl = lease.ttl ? durationMs(lease.ttl) : 0;
    this.ttlMs = ttl > 0 ? ttl : DEFAULT_TTL_MS;
    this.stream = client.runTask(task.uuid, lease.leaseId);
  }

  /** The worker is stopping: stop the handler and hand the task back. */
  interrupt(): void {
    this.handingBack = true;
    this.stop(new TaskStopped("shutdown", "the worker is stopping"));
  }

  private stop(reason: TaskStopped): void {
    if (!this.stopper.signal.aborted) this.stopper.abort(reason);
  }

  /** Runs the task to its end: the task as decided, or undefined if the lease was lost. */
  async run(): Promise<JobTask | undefined> {
    const reader = this.read();
    const ticker = setInterval(() => this.tick(), Math.min(100, this.ttlMs / 6));
    try {
      const exit = await this.runHandler();
      if (this.lost) return undefined;
      this.flush();
      this.stream.exit({ ...exit, handedBack: this.handingBack });
      const timer = new AbortController();
      const decided = await Promise.race([
        reader,
        sleep(Math.max(this.ttlMs, 5000), timer.signal).then(() => "timeout" as const),
      ]);
      timer.abort();
      if (decided === "timeout") {
        this.logger(`task ${this.taskUuid}: no answer to the exit report`);
        return undefined;
      }
      return decided;
    } finally {
      this.finished = true;
      clearInterval(ticker);
      this.stream.close();
      // The reader ends once the call is closed; its result no longer matters.
      await reader.catch(() => undefined);
    }
  }

  private async runHandler(): Promise<ExitReport> {
    const run = this;
    const context: TaskContext = {
      assignment: this.assignment,
      task: this.assignment.task as JobTask,
      job: this.assignment.job as Job,
      taskToken: this.assignment.taskToken,
      slot: this.slot,
      config: this.config,
      signal: this.stopper.signal,
      progress(fraction: number) {
        if (!(fraction >= 0 && fraction <= 1)) {
          throw new RangeError(`progress must be between 0 and 1, not ${fraction}`);
        }
        run.progress = fraction;
        run.pending();
      },
      output(text: string) {
        run.output = text;
        run.pending();
        run.tick();
      },
      success(verdict: boolean) {
        run.success = verdict;
        run.pending();
        run.tick();
      },
      log(text: string) {
        run.addLog(text);
      },
    };
    try {
      const exit = await this.handler(context);
      return exit ?? { exitCode: 0 };
    } catch (err) {
      this.addLog(`[jobtask-node-worker] the task's handler failed: ${describe(err)}\n`);
      return { exitCode: 1 };
    }
  }

  // -- what goes up -------------------------------------------------------------------------

  private pending(): void {
    this.firstPending ??= Date.now();
  }

  private addLog(text: string): void {
    if (!text) return;
    this.pending();
    this.logChunks.push(text);
    this.logBytes += Buffer.byteLength(text);
    while (this.logBytes > MAX_PENDING_LOG && this.logChunks.length > 1) {
      const oldest = Buffer.byteLength(this.logChunks.shift() as string);
      this.logBytes -= oldest;
      this.droppedBytes += oldest;
    }
    if (this.logBytes >= LOG_FLUSH_BYTES) this.tick();
  }

  private get empty(): boolean {
    return (
      this.progress === undefined &&
      this.output === undefined &&
      this.success === undefined &&
      this.logChunks.length === 0
    );
  }

  /** Sends what is due: pending reports, else a heartbeat once a third of the ttl passed. */
  private tick(): void {
    if (this.finished || this.lost || this.stream.exited) return;
    const now = Date.now();
    if (!this.empty) {
      const urgent = this.output !== undefined || this.success !== undefined;
      if (
        urgent ||
        this.logBytes >= LOG_FLUSH_BYTES ||
        now - (this.firstPending ?? now) >= LOG_FLUSH_MS
      ) {
        this.flush();
      }
    } else if (now - this.lastSend >= this.ttlMs / 3) {
      this.stream.heartbeat();
      this.lastSend = now;
    }
  }

  /** Everything pending as one message. */
  private flush(): void {
    if (this.empty || this.stream.exited) return;
    let log = this.logChunks.join("");
    if (this.droppedBytes > 0) {
      log = `[jobtask-node-worker: ${this.droppedBytes} bytes of log dropped]\n${log}`;
    }
    this.stream.send({
      progress: this.progress,
      output: this.output,
      success: this.success,
      log,
    });
    this.progress = this.output = this.success = undefined;
    this.logChunks = [];
    this.logBytes = this.droppedBytes = 0;
    this.firstPending = undefined;
    this.lastSend = Date.now();
  }

  // -- what comes down ----------------------------------------------------------------------

  /** Reads responses until the task is decided; reconnects a broken stream (same lease)
   * until a ttl passed since the server last renewed the lease: it has expired by then. */
  private async read(): Promise<JobTask | undefined> {
    let delay = 100;
    for (;;) {
      try {
        for await (const response of this.stream) {
          if (this.stream.ttlMs) this.ttlMs = this.stream.ttlMs;
          if (response.task) return response.task;
          this.instructed(response.instruction, response.reason);
        }
        if (this.lost || this.finished) return undefined;
        throw new ConnectError(
          "the server ended the stream without deciding the task",
          Code.Unavailable,
        );
      } catch (err) {
        if (this.finished) return undefined;
        const error = ConnectError.from(err);
        if (LOST_CODES.has(error.code)) {
          this.instructed(Instruction.STOP, error.rawMessage);
          return undefined;
        }
        const unrenewed = Date.now() - this.stream.renewedAt;
        if (unrenewed >= this.ttlMs) {
          this.logger(
            `task ${this.taskUuid}: RunTask stream lost, lease not renewed for ` +
              `${(unrenewed / 1000).toFixed(1)}s (${error.message}): the lease is gone`,
          );
          this.instructed(Instruction.STOP, "the RunTask stream was lost");
          return undefined;
        }
        this.logger(`task ${this.taskUuid}: RunTask stream broken (${error.message}), reconnecting`);
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 2000);
      if (this.finished) return undefined;
      this.stream.reconnect();
    }
  }

  private instructed(instruction: Instruction, reason: string): void {
    if (instruction === Instruction.STOP) {
      if (!this.lost) {
        this.logger(`task ${this.taskUuid}: lease lost (${reason}): stopping at once`);
      }
      this.lost = true;
      this.stop(new TaskStopped("stop", reason || "the lease was lost"));
    } else if (instruction === Instruction.CANCEL && !this.stopper.signal.aborted) {
      this.logger(`task ${this.taskUuid}: canceled (${reason}): stopping the handler`);
      this.addLog(`[jobtask-node-worker] canceled: ${reason || "by request"}; stopping\n`);
      this.stop(new TaskStopped("cancel", reason || "canceled"));
    }
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}
