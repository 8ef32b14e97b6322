/**
 * A worker: runs the tasks the server assigns it, each with a handler, in a fixed number of
 * slots.
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
 * Two protocols carry the tasks (`protocol`, $JOBTASK_WORKER_PROTOCOL):
 * - "session" (the default): one WorkerSession stream for the whole worker process
 *   (session.ts). It opens with the worker's identity, slots and tags; tasks are pushed
 *   down as slots free up (each freed slot is a credit sent up); the reports of all tasks
 *   go up batched, one message per turn of the event loop; one heartbeat every third of
 *   the lease ttl renews every lease. A broken session is reopened, and each live lease is
 *   reattached by reporting on it again.
 * - "stream": ClaimTask long-polls for tasks and each task has a RunTask stream of its own
 *   (task-stream.ts), reopened with the same lease when it breaks.
 *
 * Either way, up go log text, progress, output and the verdict: progress is coalesced (only
 * the latest value goes out, at most every 0.5 s), log text flushed every 0.5 s or 8 KiB,
 * output and success sent at once. Down come acknowledgements, lease renewals and
 * instructions: CANCEL (the task or its job was canceled or paused) and STOP (the lease is
 * lost) abort `ctx.signal`; after a CANCEL the handler's exit is still reported, after a
 * STOP nothing is. A lease the server has not renewed for its ttl (less a margin), by the
 * worker's own clock, is taken as lost too, whatever the connection looks like (a renewal
 * dated by when the message the server answered was sent, not when the answer came). Stopping
 * the worker aborts every handler too and hands the tasks back (queued again, unfailed).
 */

import { create } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";

import { JobtaskClient } from "./client.js";
import { workerConfig, type WorkerConfig, type WorkerOptions } from "./config.js";
import type { Job } from "./gen/jobtask/v1/job_pb.js";
import { TaskStatus, type JobTask } from "./gen/jobtask/v1/job_task_pb.js";
import {
  Instruction,
  RunTaskRequestSchema,
  type TaskAssignment,
} from "./gen/jobtask/v1/task_service_pb.js";
import { DEFAULT_TTL_MS, StreamLease, type Logger, type TaskLease } from "./lease.js";
import { sleep } from "./queue.js";
import { WorkerSession, type WorkerInfoInit } from "./session.js";
import type { ExitReport } from "./task-stream.js";

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

export type { Logger };

const defaultLogger: Logger = (line) => {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
};

const LOG_FLUSH_MS = 500;
const LOG_FLUSH_BYTES = 8192;
const MAX_PENDING_LOG = 4 * 1024 * 1024;
const MAX_BACKOFF_MS = 5000;
// The handler is stopped this fraction of a ttl (at most MAX_LEASE_MARGIN_MS) before its
// lease can expire unrenewed: the server's reaper must find it stopped.
const LEASE_MARGIN = 0.1;
const MAX_LEASE_MARGIN_MS = 3000;
// After the tasks were handed back, how long the session may take to close.
const SESSION_CLOSE_MS = 10_000;

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
  private session: WorkerSession | undefined;
  private sessionEnded: Promise<void> | undefined;
  private stopping = false;

  constructor(handler: TaskHandler, options: WorkerRunOptions = {}) {
    this.handler = handler;
    this.config = workerConfig(options);
    this.logger = options.logger ?? defaultLogger;
    this.ownClient = options.client === undefined;
    this.client = options.client ?? new JobtaskClient(this.config);
    this.freeSlots = Array.from({ length: this.config.slots }, (_, i) => i);
  }

  /** Runs tasks until `signal` aborts; then stops every running handler, hands its task
   * back and resolves. Rejects if the worker's token is refused. */
  async run(signal: AbortSignal): Promise<void> {
    const c = this.config;
    this.logger(
      `worker ${c.workerId} on ${c.nodeName}: ${c.slots} slot(s), tasks at ${c.tasksAddr} ` +
        `(${c.protocol === "session" ? "WorkerSession" : "ClaimTask/RunTask"})`,
    );
    try {
      if (c.protocol === "session") await this.sessionUntil(signal);
      else await this.claimUntil(signal);
    } finally {
      this.stopping = true;
      this.session?.stopAssigning();
      for (const run of this.runs.values()) run.interrupt();
      await Promise.allSettled(this.running);
      await this.endSession();
      if (this.ownClient) this.client.close();
    }
    this.logger(`worker ${c.workerId} stopped`);
  }

  /** Who the worker is (WorkerSession's `open`, ClaimTask's `worker`), with its free slots
   * right now. */
  private info(): WorkerInfoInit {
    return {
      workerId: this.config.workerId,
      nodeName: this.config.nodeName,
      ramKib: BigInt(this.config.ramKib),
      cores: this.config.cores,
      freeSlots: this.freeSlots.length,
      tags: this.config.tags,
      slots: this.config.slots,
    };
  }

  // -- the WorkerSession protocol (the default) -------------------------------------------

  /** One WorkerSession: assignments come down as slots free up (each freed slot is a
   * credit sent up); it lives on after `signal` until the tasks were handed back. */
  private async sessionUntil(signal: AbortSignal): Promise<void> {
    const session = new WorkerSession(
      this.client.tasks,
      () => this.info(),
      (assignment) => this.assigned(assignment),
      this.logger,
    );
    this.session = session;
    const ended = session.run();
    this.sessionEnded = ended;
    const stopped = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => resolve(), { once: true });
    });
    await Promise.race([ended, stopped]);
  }

  private async endSession(): Promise<void> {
    const session = this.session;
    const ended = this.sessionEnded;
    if (session === undefined || ended === undefined) return;
    this.session = this.sessionEnded = undefined;
    session.close();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), SESSION_CLOSE_MS);
    });
    try {
      // A session that failed (a refused token) was reported by sessionUntil already.
      if ((await Promise.race([ended.catch(() => undefined), late])) === "late") {
        this.logger("worker session did not close cleanly: dropped");
        session.abandon();
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private assigned(assignment: TaskAssignment): void {
    if (this.stopping || this.freeSlots.length === 0) {
      // Pushed while we stop (or beyond our slots): straight back to the queue.
      this.logger(`task ${assignment.task?.uuid}: handed back unstarted`);
      this.session?.enqueue(
        create(RunTaskRequestSchema, {
          taskUuid: assignment.task?.uuid,
          leaseId: assignment.lease?.leaseId,
          seq: 1n,
          exitCode: 0,
          handedBack: true,
        }),
      );
      return;
    }
    this.start(assignment);
  }

  // -- the ClaimTask/RunTask protocol -----------------------------------------------------

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
        assignments = await this.client.claim(this.info(), {
          waitSeconds: this.config.claimWaitSeconds,
          maxTasks: this.freeSlots.length,
          signal,
        });
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

  // -- both -------------------------------------------------------------------------------

  private start(assignment: TaskAssignment): void {
    const slot = this.freeSlots.shift();
    if (slot === undefined) throw new Error("claimed more tasks than free slots");
    const task = assignment.task;
    const lease = assignment.lease;
    if (!task || !lease || !assignment.job) {
      throw new Error("the server assigned a task without task, job or lease");
    }
    let carrier: TaskLease;
    if (this.session !== undefined) {
      carrier = this.session.lease(assignment);
    } else {
      const ttl = lease.ttl ? durationMs(lease.ttl) : 0;
      carrier = new StreamLease(
        this.client.runTask(task.uuid, lease.leaseId),
        ttl > 0 ? ttl : DEFAULT_TTL_MS,
        this.logger,
      );
    }
    const run = new TaskRun(carrier, this.config, this.handler, assignment, slot, this.logger);
    this.runs.set(slot, run);
    this.logger(
      `task ${run.taskUuid} of job ${assignment.job.uuid}: claimed into slot ${slot} ` +
        `(script ${assignment.job.script})`,
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
        if (!this.stopping) this.session?.credit(1);
      });
    this.running.add(running);
  }
}

export function statusName(status: TaskStatus): string {
  return (TaskStatus[status] ?? String(status)).toLowerCase();
}

/** One assigned task: its handler, its lease's carrier (the session, or a RunTask stream
 * of its own), and what flows between them. */
class TaskRun {
  readonly taskUuid: string;
  private readonly stopper = new AbortController();
  private lastSend: number;
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
    private readonly lease: TaskLease,
    private readonly config: WorkerConfig,
    private readonly handler: TaskHandler,
    private readonly assignment: TaskAssignment,
    private readonly slot: number,
    private readonly logger: Logger,
  ) {
    this.taskUuid = lease.taskUuid;
    this.lastSend = lease.now();
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
    const reader = this.lease.follow((instruction, reason) => this.instructed(instruction, reason));
    const ticker = setInterval(() => this.tick(), Math.min(100, this.lease.ttlMs / 6));
    try {
      const exit = await this.runHandler();
      if (this.lost) return undefined;
      this.flush();
      this.lease.exit({ ...exit, handedBack: this.handingBack });
      const timer = new AbortController();
      const decided = await Promise.race([
        reader,
        sleep(Math.max(this.lease.ttlMs, 5000), timer.signal).then(() => "timeout" as const),
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
      this.lease.close();
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
    this.firstPending ??= this.lease.now();
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

  /** Sends what is due: pending reports, else a heartbeat once a third of the ttl passed.
   * Stops the handler at once when the lease cannot have been renewed (see watchdog). */
  private tick(): void {
    if (this.finished || this.lost) return;
    this.watchdog();
    if (this.lost || this.lease.exited) return;
    const now = this.lease.now();
    if (!this.empty) {
      const urgent = this.output !== undefined || this.success !== undefined;
      if (
        urgent ||
        this.logBytes >= LOG_FLUSH_BYTES ||
        now - (this.firstPending ?? now) >= LOG_FLUSH_MS
      ) {
        this.flush();
      }
    } else if (now - this.lastSend >= this.lease.ttlMs / 3) {
      this.lease.heartbeat();
      this.lastSend = now;
    }
  }

  /** Everything pending as one message. */
  private flush(): void {
    if (this.empty || this.lease.exited || this.lost) return;
    let log = this.logChunks.join("");
    if (this.droppedBytes > 0) {
      log = `[jobtask-node-worker: ${this.droppedBytes} bytes of log dropped]\n${log}`;
    }
    this.lease.send({
      progress: this.progress,
      output: this.output,
      success: this.success,
      log,
    });
    this.progress = this.output = this.success = undefined;
    this.logChunks = [];
    this.logBytes = this.droppedBytes = 0;
    this.firstPending = undefined;
    this.lastSend = this.lease.now();
  }

  // -- what comes down ----------------------------------------------------------------------

  /** The lease is due to expire unrenewed: a ttl (less a margin) after the server last
   * renewed it, by this worker's own clock, whatever the connection looks like (a silent
   * partition leaves a stream hanging, not failed). A renewal is dated by when the message
   * the server answered was sent (it renewed in between), so the lease expires no earlier
   * than that plus a ttl, however slow the answer: the handler is stopped (a script killed)
   * before the server's reaper can give the task to another worker. */
  private watchdog(): void {
    const ttl = this.lease.ttlMs;
    const margin = Math.min(ttl * LEASE_MARGIN, MAX_LEASE_MARGIN_MS);
    const unrenewed = this.lease.now() - this.lease.renewedAt;
    if (unrenewed < ttl - margin) return;
    this.logger(
      `task ${this.taskUuid}: lease not renewed for ${(unrenewed / 1000).toFixed(1)}s ` +
        `(ttl ${(ttl / 1000).toFixed(1)}s) and due to expire: the lease is gone, stopping at once`,
    );
    this.instructed(Instruction.STOP, "the lease was not renewed in time");
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
