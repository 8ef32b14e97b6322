/**
 * @jobtask/client: the jobtask gRPC services from Node.
 *
 * - JobtaskClient: submit, get, cancel and watch jobs (async iterators), list and create
 *   tasks, claim tasks and open RunTask streams; the generated clients as `.jobs`/`.tasks`.
 * - Worker: runs the tasks assigned to it with a TaskHandler, over one WorkerSession
 *   stream per worker (or ClaimTask and a RunTask stream per task): heartbeats, coalesced
 *   progress, CANCEL/STOP, lease self-enforcement, handing back on shutdown.
 * - ScriptRunner: a TaskHandler running crunch-style job scripts as child processes.
 * - The generated messages and enums: `import { JobStatus } from "@jobtask/client"` or the
 *   full modules under "@jobtask/client/gen/jobtask/v1/job_pb" (and the other `*_pb` modules).
 */

export { bearerToken, JobtaskClient } from "./client.js";
export type { ClaimOptions, SubmitOptions, WatchOptions } from "./client.js";
export {
  baseUrl,
  clientConfig,
  workerConfig,
  DEFAULT_JOBS_ADDR,
  DEFAULT_TASKS_ADDR,
} from "./config.js";
export type {
  ClientConfig,
  ClientOptions,
  WorkerConfig,
  WorkerOptions,
  WorkerProtocol,
} from "./config.js";
export { TaskStream } from "./task-stream.js";
export { SessionLease, WorkerSession } from "./session.js";
export type { WorkerInfoInit } from "./session.js";
export { StreamLease } from "./lease.js";
export type { OnInstruction, TaskLease } from "./lease.js";
export type { Clock, ExitReport, RunTaskMessage } from "./task-stream.js";
export { statusName, TaskStopped, Worker } from "./worker.js";
export type {
  Logger,
  StopKind,
  TaskContext,
  TaskExit,
  TaskHandler,
  WorkerRunOptions,
} from "./worker.js";
export {
  inherited,
  INHERITED,
  parseReport,
  resolveScript,
  ScriptError,
  ScriptRunner,
  REPORT_FD,
  WITHHELD,
} from "./scripts.js";
export type { ScriptRunnerOptions } from "./scripts.js";
export { AsyncQueue } from "./queue.js";

export { JobStatus, type Job, type RuntimeConstraints, type TasksSummary } from "./gen/jobtask/v1/job_pb.js";
export { TaskStatus, type JobTask } from "./gen/jobtask/v1/job_task_pb.js";
export { WatchEventType, type WatchEvent } from "./gen/jobtask/v1/watch_pb.js";
export {
  Instruction,
  TaskService,
  type Lease,
  type RunTaskRequest,
  type RunTaskResponse,
  type TaskAssignment,
  type TaskUpdate,
  type WorkerInfo,
  type WorkerSessionRequest,
  type WorkerSessionResponse,
} from "./gen/jobtask/v1/task_service_pb.js";
export { JobService } from "./gen/jobtask/v1/job_service_pb.js";
export { ApiClientAuthorizationService } from "./gen/jobtask/v1/auth_service_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
