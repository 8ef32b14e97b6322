/**
 * A claimed task's lease as the worker sees it, whatever carries it: a RunTask stream of its
 * own (StreamLease, here) or the worker's one WorkerSession (SessionLease, session.ts). The
 * worker's TaskRun talks to either through `TaskLease`: numbered reports up, heartbeats,
 * the exit last; down, the renewals, CANCEL/STOP and finally the task as decided.
 */

import { Code, ConnectError } from "@connectrpc/connect";

import type { JobTask } from "./gen/jobtask/v1/job_task_pb.js";
import { Instruction } from "./gen/jobtask/v1/task_service_pb.js";
import { sleep } from "./queue.js";
import type { ExitReport, RunTaskMessage, TaskStream } from "./task-stream.js";

export type Logger = (line: string) => void;
export type OnInstruction = (instruction: Instruction, reason: string) => void;

export const DEFAULT_TTL_MS = 30_000;
// The lease is gone (expired, or the task given to another worker): stop at once.
const LOST_CODES = new Set([Code.FailedPrecondition, Code.NotFound]);

export interface TaskLease {
  readonly taskUuid: string;
  readonly leaseId: string;
  /** The lease's ttl as the server last stated it, ms. */
  readonly ttlMs: number;
  /** The lease's clock, ms: monotonic unless a test gave its own (see monotonicNow). */
  now(): number;
  /** No later than when the server last renewed the lease, by `now()`: a renewal is
   * dated by when the message the server answered was sent, not by when its answer arrived
   * (see SendTimes in task-stream.ts). */
  readonly renewedAt: number;
  /** The exit was reported: nothing more goes up. */
  readonly exited: boolean;
  /** Progress, output, success and/or a log chunk, numbered and kept until acknowledged. */
  send(message: RunTaskMessage): void;
  /** Renews the lease when nothing else went up for a third of its ttl (the session
   * renews all of its leases at once: a no-op there). */
  heartbeat(): void;
  /** The process's end, last. */
  exit(report: ExitReport): void;
  /** Follows the lease until the task is decided (its answer to the exit): the task, or
   * undefined once the lease is lost or closed. CANCEL and STOP go to `onInstruction`. */
  follow(onInstruction: OnInstruction): Promise<JobTask | undefined>;
  /** Done with the lease (the task was decided, or the lease is lost). */
  close(): void;
}

/** A task's own RunTask stream (the ClaimTask/RunTask protocol): reopened with the same
 * lease when it breaks, until a ttl passed since the server last renewed the lease. */
export class StreamLease implements TaskLease {
  private closed = false;
  private stopped = false;
  private readonly initialTtlMs: number;

  constructor(
    private readonly stream: TaskStream,
    ttlMs: number,
    private readonly logger: Logger,
  ) {
    this.initialTtlMs = ttlMs;
  }

  get taskUuid(): string {
    return this.stream.taskUuid;
  }
  get leaseId(): string {
    return this.stream.leaseId;
  }
  get ttlMs(): number {
    return this.stream.ttlMs ?? this.initialTtlMs;
  }
  get renewedAt(): number {
    return this.stream.renewedAt;
  }
  get exited(): boolean {
    return this.stream.exited;
  }

  now(): number {
    return this.stream.clock();
  }

  send(message: RunTaskMessage): void {
    this.stream.send(message);
  }

  heartbeat(): void {
    this.stream.heartbeat();
  }

  exit(report: ExitReport): void {
    this.stream.exit(report);
  }

  async follow(onInstruction: OnInstruction): Promise<JobTask | undefined> {
    let delay = 100;
    for (;;) {
      try {
        for await (const response of this.stream) {
          if (response.task) return response.task;
          if (response.instruction === Instruction.STOP) this.stopped = true;
          onInstruction(response.instruction, response.reason);
        }
        if (this.stopped || this.closed) return undefined;
        throw new ConnectError(
          "the server ended the stream without deciding the task",
          Code.Unavailable,
        );
      } catch (err) {
        if (this.closed) return undefined;
        const error = ConnectError.from(err);
        if (LOST_CODES.has(error.code)) {
          onInstruction(Instruction.STOP, error.rawMessage);
          return undefined;
        }
        const unrenewed = this.now() - this.stream.renewedAt;
        if (unrenewed >= this.ttlMs) {
          this.logger(
            `task ${this.taskUuid}: RunTask stream lost, lease not renewed for ` +
              `${(unrenewed / 1000).toFixed(1)}s (${error.message}): the lease is gone`,
          );
          onInstruction(Instruction.STOP, "the RunTask stream was lost");
          return undefined;
        }
        this.logger(`task ${this.taskUuid}: RunTask stream broken (${error.message}), reconnecting`);
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 2000);
      if (this.closed) return undefined;
      this.stream.reconnect();
    }
  }

  close(): void {
    this.closed = true;
    this.stream.close();
  }
}
