/**
 * One claimed task's RunTask conversation (the worker's side), kept across reconnects.
 *
 *     const stream = client.runTask(task.uuid, lease.leaseId);   // sends {task_uuid, lease_id}
 *     stream.send({ progress: 0.5, log: "half way\n" });
 *     stream.heartbeat();                                         // every lease.ttl / 3
 *     stream.exit({ exitCode: 0 });                               // last; ends the request side
 *     for await (const response of stream) {                      // acks, lease renewals,
 *       if (response.instruction === Instruction.CANCEL) ...      // CANCEL / STOP
 *     }                                                           // ends after `task` is set
 *     stream.final                                                // the task as decided
 *
 * Every message after the opening one is numbered (`seq`); the server acknowledges the
 * highest number whose changes are durable. Unacknowledged messages are kept and sent again
 * by `reconnect()` (same address, same lease), so a TaskService restart loses no log line
 * or verdict.
 */

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";

import type { JobTask } from "./gen/jobtask/v1/job_task_pb.js";
import {
  RunTaskRequestSchema,
  type RunTaskRequest,
  type RunTaskResponse,
  type TaskService,
} from "./gen/jobtask/v1/task_service_pb.js";
import { AsyncQueue } from "./queue.js";

export type RunTaskMessage = Omit<
  MessageInitShape<typeof RunTaskRequestSchema>,
  "taskUuid" | "leaseId" | "seq" | "$typeName"
>;

/** The time in ms (tests pass a clock of their own). */
export type Clock = () => number;

/** The default Clock: monotonic (performance.now()), not the wall clock. Every time a lease
 * or a heartbeat is timed by is a duration, which a wall-clock step (NTP correcting the
 * clock, a suspended VM resyncing it) must neither stretch (a lease kept past the server's
 * expiry: the task could run twice) nor shrink (a live task stopped). */
export const monotonicNow: Clock = () => performance.now();

/** When each numbered message not yet acknowledged was sent. The server renews the lease
 * when it processes a message, so an acknowledgement renews it no earlier than its message
 * was sent: dated so, however slow the answer, a worker that stops its task a ttl after the
 * last renewal does so before the server can reap the lease. */
export class SendTimes {
  private readonly times = new Map<bigint, number>();

  sent(seq: bigint, at: number): void {
    this.times.set(seq, at);
  }

  /** Forgets what `ackedSeq` acknowledges; the send time of that message, if it is news. */
  acked(ackedSeq: bigint): number | undefined {
    const at = this.times.get(ackedSeq);
    for (const seq of this.times.keys()) if (seq <= ackedSeq) this.times.delete(seq);
    return at;
  }
}

export interface ExitReport {
  /** The process's exit status ... */
  exitCode?: number;
  /** ... or the signal that ended it. */
  signal?: number;
  /** Hand the task back unfailed (the worker is shutting down): it is queued again. */
  handedBack?: boolean;
}

export class TaskStream implements AsyncIterable<RunTaskResponse> {
  readonly taskUuid: string;
  readonly leaseId: string;
  /** The task as the server decided it, once the response with `task` set arrived. */
  final: JobTask | undefined;
  /** The lease's ttl as the server last stated it (ms), if it did. */
  ttlMs: number | undefined;
  /** No later than when the server last renewed the lease (see SendTimes), by `clock`. */
  renewedAt: number;

  private readonly service: Client<typeof TaskService>;
  private seq = 0n;
  private unacked: RunTaskRequest[] = [];
  private readonly sendTimes = new SendTimes();
  private exitSent = false;
  private requests!: AsyncQueue<RunTaskRequest>;
  private responses!: AsyncIterable<RunTaskResponse>;
  private abort!: AbortController;

  constructor(
    service: Client<typeof TaskService>,
    taskUuid: string,
    leaseId: string,
    /** The stream's clock: the renewals' and the reconnect window's times. */
    readonly clock: Clock = monotonicNow,
  ) {
    this.service = service;
    this.taskUuid = taskUuid;
    this.leaseId = leaseId;
    this.renewedAt = clock();
    this.connect();
  }

  private connect(): void {
    this.abort = new AbortController();
    this.requests = new AsyncQueue();
    this.requests.push(
      create(RunTaskRequestSchema, { taskUuid: this.taskUuid, leaseId: this.leaseId }),
    );
    for (const message of this.unacked) this.requests.push(message);
    if (this.exitSent) this.requests.close();
    this.responses = this.service.runTask(this.requests, { signal: this.abort.signal });
  }

  /** Drops the current connection and opens another under the same lease, sending every
   * unacknowledged message again. Iterate the stream again afterwards. */
  reconnect(): void {
    this.abort.abort();
    this.requests.close();
    this.connect();
  }

  /** Sends progress, output, success and/or a log chunk (nothing set: a heartbeat).
   * Returns the message's `seq`. */
  send(message: RunTaskMessage): bigint {
    if (this.exitSent) throw new Error(`task ${this.taskUuid}: the exit was already reported`);
    const numbered = create(RunTaskRequestSchema, { ...message, seq: ++this.seq });
    this.sendTimes.sent(numbered.seq, this.clock());
    this.unacked.push(numbered);
    this.requests.push(numbered);
    return numbered.seq;
  }

  /** An empty message: renews the lease. Send one at least every lease.ttl / 3. */
  heartbeat(): bigint {
    return this.send({});
  }

  /** Reports the process's end, last; the server then decides the task and answers with
   * `task` set. */
  exit(report: ExitReport): bigint {
    const seq = this.send(
      report.signal !== undefined
        ? { signal: report.signal, handedBack: report.handedBack ?? false }
        : { exitCode: report.exitCode ?? 0, handedBack: report.handedBack ?? false },
    );
    this.exitSent = true;
    this.requests.close();
    return seq;
  }

  get exited(): boolean {
    return this.exitSent;
  }

  /** Messages sent but not yet acknowledged as durable. */
  get pending(): number {
    return this.unacked.length;
  }

  /** The server's responses on the current connection; ends after the one with `task` set
   * (the task is decided), or when the server closes the stream (after a STOP). Rejects
   * with a ConnectError when the connection fails. */
  async *[Symbol.asyncIterator](): AsyncGenerator<RunTaskResponse> {
    for await (const response of this.responses) {
      if (response.ackedSeq > 0n) {
        const sentAt = this.sendTimes.acked(response.ackedSeq);
        if (sentAt !== undefined) this.renewedAt = Math.max(this.renewedAt, sentAt);
        this.unacked = this.unacked.filter((m) => m.seq > response.ackedSeq);
      }
      if (response.lease?.ttl) {
        const ttl = durationMs(response.lease.ttl);
        if (ttl > 0) this.ttlMs = ttl;
      }
      if (response.task) this.final = response.task;
      yield response;
      if (response.task) return;
    }
  }

  /** Ends the call. Before the task was decided, the server takes this as the worker
   * going away: a temporary failure of the task (it is retried). */
  close(): void {
    this.abort.abort();
    this.requests.close();
  }
}
