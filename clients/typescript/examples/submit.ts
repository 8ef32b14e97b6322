/**
 * Submits a job and follows it with WatchJob, printing progress; exits 0 when it completes.
 *
 *   node dist/examples/submit.js [--new] [--priority N] [--logs] SCRIPT [NAME=VALUE ...]
 *
 * SCRIPT (or $JOBTASK_SCRIPT) names the job's script; parameters come from
 * $JOBTASK_PARAMETERS (a JSON object) and NAME=VALUE arguments (VALUE is parsed as JSON
 * when it is valid JSON, else taken as a string: n=3 is a number, words='["a","b"]' a
 * list, name=x a string). Without --new an identical job that has not failed is reused.
 * Services and token: $JOBTASK_JOBS_ADDR, $JOBTASK_TASKS_ADDR, $JOBTASK_TOKEN.
 *
 * Progress goes to stderr; the job's output, once it completed, to stdout.
 * Exit status: 0 completed, 1 failed or canceled, 2 bad usage, 3 a failed call.
 */

import { parseArgs } from "node:util";

import {
  ConnectError,
  JobStatus,
  JobtaskClient,
  TaskStatus,
  WatchEventType,
  type Job,
  type JobTask,
} from "../src/index.js";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

const TERMINAL = new Set([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED]);

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: submit [--new] [--priority N] [--logs] SCRIPT [NAME=VALUE ...]\n`,
  );
  process.exit(2);
}

function parameters(pairs: string[]): JsonObject {
  let params: JsonObject = {};
  const fromEnv = process.env.JOBTASK_PARAMETERS;
  if (fromEnv) {
    const parsed: unknown = JSON.parse(fromEnv);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      usage("$JOBTASK_PARAMETERS must be a JSON object");
    }
    params = parsed as JsonObject;
  }
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) usage(`parameters are NAME=VALUE, not ${JSON.stringify(pair)}`);
    const raw = pair.slice(eq + 1);
    let value: JsonValue;
    try {
      value = JSON.parse(raw) as JsonValue;
    } catch {
      value = raw;
    }
    params[pair.slice(0, eq)] = value;
  }
  return params;
}

const say = (line: string) => process.stderr.write(`${line}\n`);
const jobStatus = (status: JobStatus) => (JobStatus[status] ?? String(status)).toLowerCase();
const taskStatus = (status: TaskStatus) => (TaskStatus[status] ?? String(status)).toLowerCase();

function summary(job: Job): string {
  const s = job.tasksSummary;
  return s ? ` (tasks: ${s.todo} to do, ${s.running} running, ${s.done} done, ${s.failed} failed)` : "";
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      new: { type: "boolean", default: false },
      priority: { type: "string" },
      logs: { type: "boolean", default: false },
    },
  });
  const script = positionals[0] ?? process.env.JOBTASK_SCRIPT;
  if (!script) usage("no script given (argument or $JOBTASK_SCRIPT)");
  const pairs = positionals[0] !== undefined ? positionals.slice(1) : positionals;
  const priority = values.priority === undefined ? 0 : Number(values.priority);
  if (!Number.isInteger(priority)) usage(`--priority must be an integer, not ${values.priority}`);

  const client = JobtaskClient.connect();
  const interrupted = new AbortController();
  process.once("SIGINT", () => interrupted.abort());
  try {
    let job = await client.submit(script, parameters(pairs), {
      priority,
      allowDuplicate: values.new,
    });
    say(`submitted ${job.uuid} (script ${job.script}): ${jobStatus(job.status)}`);

    const tasks = new Map<string, JobTask>();
    let shownStatus = job.status;
    for await (const event of client.watchJob(job.uuid, { signal: interrupted.signal })) {
      switch (event.type) {
        case WatchEventType.SNAPSHOT:
          if (event.job) job = event.job;
          for (const task of event.tasks) tasks.set(task.uuid, task);
          if (event.snapshotDone) say(`job ${job.uuid}: ${jobStatus(job.status)}${summary(job)}`);
          shownStatus = job.status;
          break;
        case WatchEventType.JOB_CHANGED:
          if (event.job) {
            job = event.job;
            if (job.status !== shownStatus) {
              say(`job ${job.uuid}: ${jobStatus(job.status)}${summary(job)}`);
              shownStatus = job.status;
            }
          }
          break;
        case WatchEventType.TASK_CREATED:
          if (event.task) {
            tasks.set(event.task.uuid, event.task);
            say(`task ${event.task.uuid}: created (sequence ${event.task.sequence})`);
          }
          break;
        case WatchEventType.TASK_CHANGED:
          if (event.task) {
            const before = tasks.get(event.task.uuid);
            tasks.set(event.task.uuid, event.task);
            if (before?.status !== event.task.status) {
              const where = event.task.workerId ? ` on ${event.task.workerId}` : "";
              say(`task ${event.task.uuid}: ${taskStatus(event.task.status)}${where}`);
            }
          }
          break;
        case WatchEventType.TASK_PROGRESS:
          say(`task ${event.taskUuid}: progress ${Math.round(event.progress * 100)}%`);
          break;
        case WatchEventType.TASK_LOG:
          if (values.logs) {
            for (const line of event.log.replace(/\n$/, "").split("\n")) {
              say(`task ${event.taskUuid} | ${line}`);
            }
          }
          break;
        case WatchEventType.TASK_DELETED:
          tasks.delete(event.taskUuid);
          say(`task ${event.taskUuid}: deleted`);
          break;
      }
    }
    if (interrupted.signal.aborted) {
      say(`stopped following ${job.uuid} (the job goes on)`);
      return 130;
    }
    // The stream ends when the job is terminal; read it once more for its final state.
    job = await client.getJob(job.uuid);
    if (!TERMINAL.has(job.status)) {
      say(`job ${job.uuid}: the watch ended while it was ${jobStatus(job.status)}`);
      return 1;
    }
    if (job.status !== shownStatus) say(`job ${job.uuid}: ${jobStatus(job.status)}${summary(job)}`);
    if (job.status !== JobStatus.COMPLETED) return 1;
    const output = job.output ?? "";
    // The output as it is; on a terminal, ended with a newline so the prompt starts afresh.
    process.stdout.write(process.stdout.isTTY && !output.endsWith("\n") ? `${output}\n` : output);
    return 0;
  } catch (err) {
    if (interrupted.signal.aborted) return 130;
    const error = ConnectError.from(err);
    say(`error: ${error.message}`);
    return 3;
  } finally {
    client.close();
  }
}

process.exitCode = await main();
