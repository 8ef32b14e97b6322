/**
 * `JobtaskClient`: JobService and TaskService over gRPC (HTTP/2 cleartext, connect-node's
 * gRPC transport), with every call carrying `authorization: Bearer <token>`.
 *
 *     const client = JobtaskClient.connect();          // JOBTASK_* variables, or options
 *     const job = await client.submit("hash.py", { input: "x" });
 *     for await (const event of client.watchJob(job.uuid)) { ... }
 *
 * Methods return the services' own messages (typed, from src/gen); failed calls reject with
 * connect's `ConnectError` (its `code` is the gRPC status code, e.g. `Code.NotFound`).
 * The generated clients are there too, for anything the helpers do not cover:
 * `client.jobs.queueSize({})`, `client.tasks.updateTask({...})`.
 */

import { fromJson, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, ListValueSchema } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createClient,
  type CallOptions,
  type Client,
  type Interceptor,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { baseUrl, clientConfig, type ClientConfig, type ClientOptions } from "./config.js";
import type { Job, RuntimeConstraintsSchema } from "./gen/jobtask/v1/job_pb.js";
import type { JobTask } from "./gen/jobtask/v1/job_task_pb.js";
import { JobService } from "./gen/jobtask/v1/job_service_pb.js";
import {
  TaskService,
  type TaskAssignment,
  type WorkerInfoSchema,
} from "./gen/jobtask/v1/task_service_pb.js";
import { WatchEventType, type WatchEvent } from "./gen/jobtask/v1/watch_pb.js";
import { sleep } from "./queue.js";
import { monotonicNow, TaskStream } from "./task-stream.js";

/** Adds `authorization: Bearer <token>` to every request (unless the call set its own). */
export function bearerToken(token: string): Interceptor {
  return (next) => (request) => {
    if (!request.header.has("authorization")) {
      request.header.set("authorization", `Bearer ${token}`);
    }
    return next(request);
  };
}

export interface SubmitOptions {
  /** Queue priority: higher runs first. */
  priority?: number;
  /** Git commit, tag or branch of the script. */
  scriptVersion?: string;
  /** Makes submission idempotent: the same submit_id returns the same job. */
  submitId?: string;
  /** Submit even if an identical job was submitted and has not failed (default: reuse it). */
  allowDuplicate?: boolean;
  constraints?: MessageInitShape<typeof RuntimeConstraintsSchema>;
  signal?: AbortSignal;
}

/** What watchJob asks for (max_events_per_message); the server packs at most 256 anyway. */
const EVENTS_PER_MESSAGE = 256;

export interface WatchOptions {
  /** Resume after this change-feed position (no snapshot); see WatchJobRequest.after_seq. */
  afterSeq?: bigint;
  /** Only this task's events (WatchTasks instead of WatchJob). */
  taskUuid?: string;
  /** Yield HEARTBEAT events too (default: skipped). */
  heartbeats?: boolean;
  /** Give up after this long without reaching a server (default 30 s). */
  reconnectForMs?: number;
  signal?: AbortSignal;
}

export interface ClaimOptions {
  /** Long-poll this long for a runnable task (default 0: answer at once). */
  waitSeconds?: number;
  /** Claim up to this many tasks (default 1, at most the worker's free_slots). */
  maxTasks?: number;
  signal?: AbortSignal;
}

const TASK_PAGE = 1000n;
// Headroom over a long poll's own wait before the call itself times out.
const CLAIM_SLACK_MS = 10_000;

export class JobtaskClient {
  readonly config: ClientConfig;
  /** The generated JobService client (every RPC, typed). */
  readonly jobs: Client<typeof JobService>;
  /** The generated TaskService client (every RPC, typed). */
  readonly tasks: Client<typeof TaskService>;
  private readonly sessions: Http2SessionManager[];

  constructor(config: ClientConfig) {
    this.config = config;
    const interceptors = config.token ? [bearerToken(config.token)] : [];
    const tls = config.tlsCa !== undefined;
    const jobsUrl = baseUrl(config.jobsAddr, tls);
    const tasksUrl = baseUrl(config.tasksAddr, tls);
    // Verified by the given CA only (as the Python SDK does), not the system's roots.
    const sessionOptions = tls ? { ca: config.tlsCa } : undefined;
    const jobsSession = new Http2SessionManager(jobsUrl, undefined, sessionOptions);
    const tasksSession = new Http2SessionManager(tasksUrl, undefined, sessionOptions);
    this.sessions = [jobsSession, tasksSession];
    this.jobs = createClient(
      JobService,
      createGrpcTransport({ baseUrl: jobsUrl, sessionManager: jobsSession, interceptors }),
    );
    this.tasks = createClient(
      TaskService,
      createGrpcTransport({ baseUrl: tasksUrl, sessionManager: tasksSession, interceptors }),
    );
  }

  /** A client for the given addresses and token; unset ones come from JOBTASK_JOBS_ADDR,
   * JOBTASK_TASKS_ADDR and JOBTASK_TOKEN. */
  static connect(options: ClientOptions = {}): JobtaskClient {
    return new JobtaskClient(clientConfig(options));
  }

  /** Closes the HTTP/2 connections (idle ones never keep the process alive anyway). */
  close(): void {
    for (const session of this.sessions) session.abort();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // -- jobs -------------------------------------------------------------------------------

  /** Submits a job running `script` with `parameters` (its script_parameters). */
  submit(script: string, parameters: JsonObject = {}, options: SubmitOptions = {}): Promise<Job> {
    return this.jobs.createJob(
      {
        job: {
          script,
          scriptParameters: parameters,
          scriptVersion: options.scriptVersion ?? "",
          priority: options.priority ?? 0,
          submitId: options.submitId,
          runtimeConstraints: options.constraints,
        },
        allowDuplicate: options.allowDuplicate ?? false,
      },
      { signal: options.signal },
    );
  }

  getJob(uuid: string, options?: CallOptions): Promise<Job> {
    return this.jobs.getJob({ uuid }, options);
  }

  cancelJob(uuid: string, options?: CallOptions): Promise<Job> {
    return this.jobs.cancelJob({ uuid }, options);
  }

  /**
   * A snapshot of the job and its tasks, then every change, until the job is terminal
   * (the stream then ends). A stream broken because a server went away (UNAVAILABLE) is
   * reopened with `after_seq` = the last position seen, so nothing is missed or repeated;
   * a break during the snapshot starts it over (a SNAPSHOT page carrying `job` again).
   */
  async *watchJob(uuid: string, options: WatchOptions = {}): AsyncGenerator<WatchEvent> {
    let last = options.afterSeq;
    let delay = 100;
    let brokenSince: number | undefined;
    const reconnectFor = options.reconnectForMs ?? 30_000;
    for (;;) {
      try {
        // Packed messages (WatchEvent.more) for a watcher that lags, handed on one by one.
        const maxEventsPerMessage = EVENTS_PER_MESSAGE;
        const stream = options.taskUuid
          ? this.tasks.watchTasks(
              { jobUuid: uuid, taskUuid: options.taskUuid, afterSeq: last, maxEventsPerMessage },
              { signal: options.signal },
            )
          : this.jobs.watchJob(
              { uuid, afterSeq: last, maxEventsPerMessage },
              { signal: options.signal },
            );
        for await (const message of stream) {
          brokenSince = undefined;
          delay = 100;
          const packed = message.more;
          message.more = [];
          for (const event of [message, ...packed]) {
            if (event.type !== WatchEventType.SNAPSHOT || event.snapshotDone) last = event.seq;
            if (options.heartbeats || event.type !== WatchEventType.HEARTBEAT) yield event;
          }
        }
        return;
      } catch (err) {
        const error = ConnectError.from(err);
        if (error.code !== Code.Unavailable || options.signal?.aborted) throw error;
        const now = monotonicNow();
        brokenSince ??= now;
        if (now - brokenSince >= reconnectFor) throw error;
      }
      await sleep(delay, options.signal);
      delay = Math.min(delay * 2, 2000);
    }
  }

  // -- tasks ------------------------------------------------------------------------------

  getTask(uuid: string, options?: CallOptions): Promise<JobTask> {
    return this.tasks.getTask({ uuid }, options);
  }

  /** All tasks of a job, in order of arrival (qsequence). */
  async listTasks(jobUuid: string, options?: CallOptions): Promise<JobTask[]> {
    const found: JobTask[] = [];
    for (;;) {
      const page = await this.tasks.listTasks(
        {
          filters: fromJson(ListValueSchema, [["job_uuid", "=", jobUuid]]),
          order: ["qsequence asc"],
          limit: TASK_PAGE,
          offset: BigInt(found.length),
          count: "none",
        },
        options,
      );
      found.push(...page.items);
      if (BigInt(page.items.length) < TASK_PAGE) return found;
    }
  }

  /** Creates a task in a job; with `createdBy`, a child task that runs after its creator. */
  createTask(
    jobUuid: string,
    options: {
      sequence?: number;
      parameters?: JsonObject;
      createdBy?: string;
      constraints?: MessageInitShape<typeof RuntimeConstraintsSchema>;
    } & CallOptions = {},
  ): Promise<JobTask> {
    const { sequence, parameters, createdBy, constraints, ...call } = options;
    return this.tasks.createTask(
      {
        jobTask: {
          jobUuid,
          sequence: sequence ?? 0,
          parameters: parameters ?? {},
          createdByJobTaskUuid: createdBy,
          runtimeConstraints: constraints,
        },
      },
      call,
    );
  }

  // -- workers ----------------------------------------------------------------------------

  /** Long-polls for runnable tasks; each comes with a lease and a task token. */
  async claim(
    worker: MessageInitShape<typeof WorkerInfoSchema>,
    options: ClaimOptions = {},
  ): Promise<TaskAssignment[]> {
    const waitMs = Math.max(0, (options.waitSeconds ?? 0) * 1000);
    const response = await this.tasks.claimTask(
      { worker, wait: durationFromMs(waitMs), maxTasks: options.maxTasks ?? 1 },
      { signal: options.signal, timeoutMs: waitMs + CLAIM_SLACK_MS },
    );
    return response.assignments;
  }

  /** Opens the RunTask stream of a claimed task (see TaskStream). */
  runTask(taskUuid: string, leaseId: string): TaskStream {
    return new TaskStream(this.tasks, taskUuid, leaseId);
  }
}
