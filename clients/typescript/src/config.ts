/**
 * Where the services are and who we are: explicit options first, then the JOBTASK_*
 * environment variables the Python SDK and the `jobtask` CLI read too.
 */

import { readFileSync } from "node:fs";
import { availableParallelism, hostname, totalmem } from "node:os";
import { randomBytes } from "node:crypto";

export const DEFAULT_JOBS_ADDR = "127.0.0.1:50051";
export const DEFAULT_TASKS_ADDR = "127.0.0.1:50052";

export interface ClientOptions {
  /** JobService `host:port` (or an `http://` URL); default $JOBTASK_JOBS_ADDR, 127.0.0.1:50051. */
  jobsAddr?: string;
  /** TaskService `host:port` (or an `http://` URL); default $JOBTASK_TASKS_ADDR, 127.0.0.1:50052. */
  tasksAddr?: string;
  /** Sent as `authorization: Bearer <token>` on every call; default $JOBTASK_TOKEN. */
  token?: string;
  /** PEM file of the CA that signed the services' TLS certificates: `host:port` addresses
   * are then dialled over TLS (https); default $JOBTASK_TLS_CA. Unset: cleartext. */
  tlsCa?: string;
}

export interface ClientConfig {
  jobsAddr: string;
  tasksAddr: string;
  token: string | undefined;
  /** The CA's PEM text, when the services speak TLS. */
  tlsCa: string | undefined;
}

type Env = Record<string, string | undefined>;

export function clientConfig(options: ClientOptions = {}, env: Env = process.env): ClientConfig {
  return {
    jobsAddr: oneAddress(
      "JOBTASK_JOBS_ADDR",
      options.jobsAddr || env.JOBTASK_JOBS_ADDR || DEFAULT_JOBS_ADDR,
    ),
    tasksAddr: oneAddress(
      "JOBTASK_TASKS_ADDR",
      options.tasksAddr || env.JOBTASK_TASKS_ADDR || DEFAULT_TASKS_ADDR,
    ),
    token: options.token || env.JOBTASK_TOKEN || undefined,
    tlsCa: readCa(options.tlsCa || env.JOBTASK_TLS_CA),
  };
}

/** The Python SDK and the gateway accept a list of replicas; this client does not (Node's
 * HTTP/2 has no pick-first failover): say so rather than dial a malformed URL. */
function oneAddress(name: string, addr: string): string {
  if (addr.includes(",")) {
    throw new Error(
      `${name}=${addr}: the TypeScript client takes one address; use one DNS name for the ` +
        "replicas, or a load balancer",
    );
  }
  return addr;
}

function readCa(path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read the TLS CA file ${path} ($JOBTASK_TLS_CA): ${String(err)}`);
  }
}

/** `host:port` → `http://host:port` (gRPC over cleartext HTTP/2), or `https://host:port`
 * with `tls`; URLs pass through. */
export function baseUrl(addr: string, tls = false): string {
  return /^https?:\/\//.test(addr) ? addr : `${tls ? "https" : "http"}://${addr}`;
}

export interface WorkerOptions extends ClientOptions {
  /** Tasks run at once; default $JOBTASK_WORKER_SLOTS, 1. */
  slots?: number;
  /** The machine's name for max_nodes/max_tasks_per_node; default $JOBTASK_NODE_NAME, the host name. */
  nodeName?: string;
  /** Stable id of this worker process; default $JOBTASK_WORKER_ID, `<node>-<pid>-<random>`. */
  workerId?: string;
  /** How tasks reach the worker: "session" (one WorkerSession stream for the worker
   * process) or "stream" (ClaimTask long-polls, a RunTask stream per task); default
   * $JOBTASK_WORKER_PROTOCOL, "session". */
  protocol?: WorkerProtocol;
  /** Seconds each ClaimTask long-polls (the "stream" protocol); default 10. */
  claimWaitSeconds?: number;
  /** Real memory offered, KiB; default $JOBTASK_WORKER_RAM_KIB, detected. */
  ramKib?: number;
  /** Cores offered; default $JOBTASK_WORKER_CORES, detected. */
  cores?: number;
  /** Worker tags; default $JOBTASK_WORKER_TAGS (comma-separated). */
  tags?: string[];
}

export type WorkerProtocol = "session" | "stream";

export interface WorkerConfig extends ClientConfig {
  slots: number;
  protocol: WorkerProtocol;
  nodeName: string;
  workerId: string;
  claimWaitSeconds: number;
  ramKib: number;
  cores: number;
  tags: string[];
}

function positiveInt(name: string, value: string | number | undefined, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`${name} must be a positive integer, not ${JSON.stringify(value)}`);
  }
  return n;
}

function protocol(value: string | undefined): WorkerProtocol {
  if (value === undefined || value === "") return "session";
  if (value !== "session" && value !== "stream") {
    throw new Error(`JOBTASK_WORKER_PROTOCOL must be 'session' or 'stream', not ${JSON.stringify(value)}`);
  }
  return value;
}

export function workerConfig(options: WorkerOptions = {}, env: Env = process.env): WorkerConfig {
  const nodeName = options.nodeName || env.JOBTASK_NODE_NAME || hostname();
  const tags =
    options.tags ??
    (env.JOBTASK_WORKER_TAGS ?? "")
      .split(",")
      .map((t) => t.trim())
      .filter((t) => t !== "");
  return {
    ...clientConfig(options, env),
    slots: positiveInt("JOBTASK_WORKER_SLOTS", options.slots ?? env.JOBTASK_WORKER_SLOTS, 1),
    nodeName,
    workerId:
      options.workerId ||
      env.JOBTASK_WORKER_ID ||
      `${nodeName}-${process.pid}-${randomBytes(3).toString("hex")}`,
    protocol: protocol(options.protocol ?? env.JOBTASK_WORKER_PROTOCOL),
    claimWaitSeconds: options.claimWaitSeconds ?? 10,
    ramKib: positiveInt(
      "JOBTASK_WORKER_RAM_KIB",
      options.ramKib ?? env.JOBTASK_WORKER_RAM_KIB,
      Math.floor(totalmem() / 1024),
    ),
    cores: positiveInt(
      "JOBTASK_WORKER_CORES",
      options.cores ?? env.JOBTASK_WORKER_CORES,
      availableParallelism(),
    ),
    tags,
  };
}
