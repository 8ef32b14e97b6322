/**
 * The worker's one WorkerSession stream, shared by all of its tasks (the Python worker's
 * jobtask.worker.session, in Node).
 *
 * `WorkerSession` keeps the stream up (reopening it with backoff when it breaks), sends
 * everything queued since its last write as one message (reports of many tasks, credits for
 * freed slots, the heartbeat), and routes what comes down: assignments to the worker, each
 * task's acknowledgements, renewals, instructions and decision to its `SessionLease`. One
 * heartbeat every third of a lease's ttl renews all of the session's leases.
 *
 * A `SessionLease` keeps its task's unacknowledged reports; after a reconnect they are sent
 * again on the new session (or, with none, an empty report), which reattaches the lease.
 */

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";

import type { JobTask } from "./gen/jobtask/v1/job_task_pb.js";
import {
  Instruction,
  RunTaskRequestSchema,
  WorkerSessionRequestSchema,
  type Lease,
  type RunTaskRequest,
  type TaskAssignment,
  type TaskService,
  type TaskUpdate,
  type WorkerInfoSchema,
  type WorkerSessionRequest,
  type WorkerSessionResponse,
} from "./gen/jobtask/v1/task_service_pb.js";
import { DEFAULT_TTL_MS, type Logger, type OnInstruction, type TaskLease } from "./lease.js";
import { AsyncQueue, sleep } from "./queue.js";
import {
  monotonicNow,
  SendTimes,
  type Clock,
  type ExitReport,
  type RunTaskMessage,
} from "./task-stream.js";

const MAX_BACKOFF_MS = 5000;
// The session sends a message (a heartbeat if nothing else) at least this often, idle or
// busy, and says so when it opens (WorkerInfo.heartbeatInterval): the server stops assigning
// tasks to a worker it has not heard from for two of these (one stopped or hung).
export const HEARTBEAT_INTERVAL_MS = 2000;
// Reports of one message at most (the server's bound is larger).
const MAX_REPORTS = 500;
// The token is refused: reconnecting cannot help.
const REFUSED = new Set([Code.Unauthenticated, Code.PermissionDenied]);

export type WorkerInfoInit = MessageInitShape<typeof WorkerInfoSchema>;

function leaseTtlMs(lease: Lease | undefined): number | undefined {
  const ttl = lease?.ttl ? durationMs(lease.ttl) : 0;
  return ttl > 0 ? ttl : undefined;
}

export class WorkerSession {
  readonly leases = new Map<string, SessionLease>();
  /** The lease ttl the server last stated, ms. */
  ttlMs = DEFAULT_TTL_MS;
  private queue: RunTaskRequest[] = [];
  private credits = 0;
  private heartbeatDue = false;
  /** When the last message went up (the session's clock). */
  private lastSent = 0;
  /** When each heartbeat still unanswered was sent, oldest first. */
  private beats: number[] = [];
  private assigning = true;
  /** While a message's assignments are handed out: when that message arrived. */
  private arrivedAt: number | undefined;
  private closing = false;
  private requests: AsyncQueue<WorkerSessionRequest> | undefined;
  private flushing = false;
  private beat: NodeJS.Timeout | undefined;
  private abort: AbortController | undefined;

  constructor(
    private readonly service: Client<typeof TaskService>,
    /** Who the worker is, with its free slots right now (sent when a session opens). */
    private readonly info: () => WorkerInfoInit,
    private readonly onAssignment: (assignment: TaskAssignment) => void,
    private readonly logger: Logger,
    /** The session's and its leases' clock (the heartbeats' and renewals' times). */
    readonly clock: Clock = monotonicNow,
    /** The message promised at least this often (ms; 100 ms to an hour, the server's bounds). */
    readonly heartbeatIntervalMs: number = HEARTBEAT_INTERVAL_MS,
  ) {}

  // -- called by the worker and the leases ------------------------------------------------

  /** Slots freed: the server may assign this many more tasks. */
  credit(slots = 1): void {
    this.credits += slots;
    this.schedule();
  }

  /** The worker is stopping: no more credits (and a reopened session offers no slot). */
  stopAssigning(): void {
    this.assigning = false;
  }

  lease(assignment: TaskAssignment): SessionLease {
    const task = assignment.task;
    const leaseId = assignment.lease?.leaseId;
    if (!task || !leaseId) throw new Error("an assignment without task or lease");
    const lease = new SessionLease(
      this,
      task.uuid,
      leaseId,
      leaseTtlMs(assignment.lease) ?? this.ttlMs,
      this.arrivedAt ?? this.clock(),
    );
    this.leases.set(task.uuid, lease);
    return lease;
  }

  /** Sends a task's report with the next message (reports of one tick go together). */
  enqueue(message: RunTaskRequest): void {
    this.queue.push(message);
    this.schedule();
  }

  forget(lease: SessionLease): void {
    if (this.leases.get(lease.taskUuid) === lease) this.leases.delete(lease.taskUuid);
    this.schedule();
  }

  /** Ends the session once every lease is over and everything queued was sent. */
  close(): void {
    this.closing = true;
    this.schedule();
  }

  /** Drops the session at once (after close() did not end it in time). */
  abandon(): void {
    this.closing = true;
    this.queue = [];
    this.leases.clear();
    this.abort?.abort();
  }

  // -- the stream -------------------------------------------------------------------------

  /** Keeps a session open until close() and the leases are over; rejects if the token is
   * refused. */
  async run(): Promise<void> {
    let backoff = 200;
    while (!this.closing || this.queue.length > 0 || this.leases.size > 0) {
      let answered = false;
      try {
        await this.session(() => {
          answered = true;
        });
        return;
      } catch (err) {
        const error = ConnectError.from(err);
        if (REFUSED.has(error.code)) throw error;
        if (this.closing && this.leases.size === 0 && this.queue.length === 0) return;
        if (answered) backoff = 200;
        this.logger(
          `worker session broken (${error.message}), reopening in ${(backoff / 1000).toFixed(1)}s`,
        );
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  /** One session: open, reattach the live leases, then route answers until it ends. */
  private async session(answered: () => void): Promise<void> {
    const abort = new AbortController();
    const requests = new AsyncQueue<WorkerSessionRequest>();
    const open = this.info();
    if (!this.assigning) open.freeSlots = 0;
    open.heartbeatInterval = durationFromMs(this.heartbeatIntervalMs);
    requests.push(create(WorkerSessionRequestSchema, { open }));
    // The credits so far are in the opening message's free slots.
    this.credits = 0;
    this.beats = []; // a new session: the old one's heartbeats get no answer
    this.reattach();
    this.abort = abort;
    this.requests = requests;
    this.armHeartbeat();
    this.flush();
    try {
      for await (const response of this.service.workerSession(requests, {
        signal: abort.signal,
      })) {
        answered();
        this.receive(response);
      }
      if (this.closing && this.leases.size === 0 && this.queue.length === 0) return;
      throw new ConnectError("the server ended the session", Code.Unavailable);
    } finally {
      clearTimeout(this.beat);
      this.beat = undefined;
      this.requests = undefined;
      requests.close();
      abort.abort();
    }
  }

  /** After a reconnect: every live lease's unacknowledged reports, or an empty one that
   * attaches the lease to this session. Reports of tasks handed back unstarted are dropped
   * (their leases expire). */
  private reattach(): void {
    this.queue = [];
    for (const lease of this.leases.values()) {
      if (lease.final !== undefined || lease.lostReason !== undefined) continue;
      if (lease.unacked.length > 0) {
        this.queue.push(...lease.unacked);
      } else {
        this.queue.push(
          create(RunTaskRequestSchema, { taskUuid: lease.taskUuid, leaseId: lease.leaseId }),
        );
      }
    }
  }

  private receive(response: WorkerSessionResponse): void {
    // Every lease of a message is dated by the message's arrival, read once: the server
    // granted them all before it sent it, and starting one task (a spawn) must not date
    // the next one's lease later than that.
    this.arrivedAt = response.assignments.length > 0 ? this.clock() : undefined;
    try {
      for (const assignment of response.assignments) {
        const ttl = leaseTtlMs(assignment.lease);
        if (ttl !== undefined) this.ttlMs = ttl;
        this.onAssignment(assignment);
      }
    } finally {
      this.arrivedAt = undefined;
    }
    // A heartbeat's answer renewed every lease it names, no earlier than the heartbeat was
    // sent (see SendTimes). The server answers heartbeats that arrive while it is busy once,
    // together: the answer is dated by the oldest one waiting and the rest are forgotten (an
    // answer for one of them finds none and renews nothing). Taking one per answer would
    // date every later renewal a beat too early for each merge, until the watchdog killed
    // healthy scripts.
    const beat = response.heartbeatAcked ? this.beats[0] : undefined;
    if (response.heartbeatAcked) this.beats = [];
    for (const update of response.updates) {
      const lease = this.leases.get(update.taskUuid);
      if (lease === undefined || lease.leaseId !== update.lease?.leaseId) continue;
      if (beat !== undefined && update.instruction !== Instruction.STOP) lease.renewed(beat);
      lease.receive(update);
    }
  }

  /** Every third of the shortest lease ttl held, one heartbeat for all of the leases; and
   * one whenever nothing went up for heartbeatIntervalMs, idle or not (the promise). */
  private armHeartbeat(): void {
    let lastBeat = this.clock();
    this.lastSent = this.clock();
    const tick = () => {
      let ttl = this.ttlMs;
      for (const lease of this.leases.values()) ttl = Math.min(ttl, lease.ttlMs);
      const now = this.clock();
      if (this.leases.size === 0) lastBeat = now;
      if (
        (this.leases.size > 0 && now - lastBeat >= ttl / 3) ||
        now - this.lastSent >= this.heartbeatIntervalMs
      ) {
        lastBeat = now;
        this.heartbeatDue = true;
        this.flush();
      }
      this.beat = setTimeout(tick, Math.min(ttl / 6, 500));
    };
    clearTimeout(this.beat);
    this.beat = setTimeout(tick, Math.min(this.ttlMs / 6, 500));
  }

  /** Everything queued during this turn of the event loop goes up as one message. */
  private schedule(): void {
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      this.flush();
    });
  }

  private flush(): void {
    const requests = this.requests;
    if (requests === undefined) return;
    while (this.queue.length > 0 || this.heartbeatDue || (this.credits > 0 && this.assigning)) {
      const reports = this.queue.splice(0, MAX_REPORTS);
      const message = create(WorkerSessionRequestSchema, {
        reports,
        heartbeat: this.heartbeatDue,
      });
      if (this.assigning) {
        message.credits = this.credits;
        this.credits = 0;
      }
      if (this.heartbeatDue) this.beats.push(this.clock());
      this.heartbeatDue = false;
      this.lastSent = this.clock();
      requests.push(message);
    }
    if (this.closing && this.leases.size === 0) requests.close();
  }
}

/** One task's lease, carried by the worker's session (see the module's docstring). */
export class SessionLease implements TaskLease {
  /** No later than when the server last renewed the lease (see SendTimes). */
  renewedAt: number;
  final: JobTask | undefined;
  lostReason: string | undefined;
  unacked: RunTaskRequest[] = [];
  private seq = 0n;
  private readonly sendTimes = new SendTimes();
  private exitSent = false;
  private onInstruction: OnInstruction | undefined;
  private decide!: (task: JobTask | undefined) => void;
  private readonly decided: Promise<JobTask | undefined>;

  constructor(
    private readonly session: WorkerSession,
    readonly taskUuid: string,
    readonly leaseId: string,
    public ttlMs: number,
    /** When the assignment arrived: the server granted the lease no later. */
    grantedAt: number = session.clock(),
  ) {
    this.renewedAt = grantedAt;
    this.decided = new Promise((resolve) => {
      this.decide = resolve;
    });
  }

  get exited(): boolean {
    return this.exitSent;
  }

  now(): number {
    return this.session.clock();
  }

  send(message: RunTaskMessage): void {
    if (this.exitSent) throw new Error(`task ${this.taskUuid}: the exit was already reported`);
    if (this.lostReason !== undefined) return;
    const numbered = create(RunTaskRequestSchema, {
      ...message,
      taskUuid: this.taskUuid,
      leaseId: this.leaseId,
      seq: ++this.seq,
    });
    this.sendTimes.sent(numbered.seq, this.session.clock());
    this.unacked.push(numbered);
    this.session.enqueue(numbered);
  }

  /** The session's own heartbeat renews every lease at once. */
  heartbeat(): void {}

  exit(report: ExitReport): void {
    this.send(
      report.signal !== undefined
        ? { signal: report.signal, handedBack: report.handedBack ?? false }
        : { exitCode: report.exitCode ?? 0, handedBack: report.handedBack ?? false },
    );
    this.exitSent = true;
  }

  follow(onInstruction: OnInstruction): Promise<JobTask | undefined> {
    this.onInstruction = onInstruction;
    return this.decided;
  }

  /** The server renewed the lease answering a message sent at `sentAt`. */
  renewed(sentAt: number): void {
    this.renewedAt = Math.max(this.renewedAt, sentAt);
  }

  receive(update: TaskUpdate): void {
    if (update.ackedSeq > 0n) {
      const sentAt = this.sendTimes.acked(update.ackedSeq);
      if (sentAt !== undefined) this.renewed(sentAt);
      this.unacked = this.unacked.filter((m) => m.seq > update.ackedSeq);
    }
    const ttl = leaseTtlMs(update.lease);
    if (ttl !== undefined) this.ttlMs = ttl;
    if (update.task) {
      // The exit was applied: a closing STOP only says the lease is over.
      this.final = update.task;
      this.decide(update.task);
      return;
    }
    if (update.instruction === Instruction.STOP) {
      this.lostReason = update.reason || "the lease was lost";
    }
    if (update.instruction === Instruction.CANCEL || update.instruction === Instruction.STOP) {
      this.onInstruction?.(update.instruction, update.reason);
    }
    if (this.lostReason !== undefined) this.decide(undefined);
  }

  close(): void {
    this.session.forget(this);
    this.decide(undefined);
  }
}
