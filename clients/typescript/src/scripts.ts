/**
 * A TaskHandler that runs each task's job script as a child process, the way the Python
 * worker (`jobtask worker`) and Arvados's crunch-job do, so the same scripts directory
 * serves a mixed fleet.
 *
 * - The job's `script` names a file in the scripts directory; names leading outside it
 *   (`..`, absolute, a symbolic link pointing out) fail the task for good; a missing or
 *   non-executable script is a temporary failure (another worker may have it).
 * - An executable script with a `#!` line runs directly: its own interpreter, whatever its
 *   name (crunch-job executed the script itself). A `*.py` without one, or not executable,
 *   runs under $JOBTASK_PYTHON (default `python3` from PATH); anything else must be
 *   executable.
 * - The script leads its own process group; its working directory is a fresh TASK_WORK,
 *   stdin is /dev/null, stdout and stderr become the task's log, and it gets crunch's task
 *   environment (JOB_UUID, TASK_UUID, TASK_SEQUENCE, JOB_PARAMETER_<NAME>, TASK_WORK,
 *   JOBTASK_TOKEN = the task's own token, ...) over an allow-listed part of the worker's
 *   own (see `inherited`): never the worker's credentials.
 * - It reports on the descriptor $JOBTASK_REPORT_FD (3), one line each: `progress 0.5`,
 *   `output <text>`, `output_json "<JSON string>"`, `success true|false`. Reports written
 *   before it exits are all sent before its exit is reported.
 * - CANCEL stops the whole group politely (SIGINT, then SIGTERM after the grace period,
 *   then SIGKILL after another); STOP kills it at once; worker shutdown is like CANCEL.
 */

import { spawn } from "node:child_process";
import { constants as osConstants, tmpdir } from "node:os";
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  existsSync,
  openSync,
  readSync,
  realpathSync,
  statSync,
} from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { createInterface } from "node:readline";
import { StringDecoder } from "node:string_decoder";

import type { JsonValue } from "@bufbuild/protobuf";

import type { TaskContext, TaskExit, TaskHandler } from "./worker.js";
import { TaskStopped } from "./worker.js";

export const REPORT_FD = 3;
// Exit codes a shell would give for a command it could not find or not run.
const EXIT_NOT_FOUND = 127;
const EXIT_CANNOT_RUN = 126;
// After the script exits, how long its output pipes may stay open (held by a straggler
// that escaped the process group) before we stop reading them.
const DRAIN_MS = 2000;

export interface ScriptRunnerOptions {
  /** Where job scripts live; default $JOBTASK_SCRIPTS_DIR, ./crunch_scripts. */
  scriptsDir?: string;
  /** Base of the worker's scratch space (CRUNCH_TMP); default $JOBTASK_WORK_DIR, $TMPDIR. */
  workDir?: string;
  /** Interpreter for `*.py` scripts; default $JOBTASK_PYTHON, `python3`. */
  python?: string;
  /** Between SIGINT, SIGTERM and SIGKILL when stopping a script; default 2000 ms. */
  killGraceMs?: number;
  /** Given to scripts as ARVADOS_API_HOST (with the task token as ARVADOS_API_TOKEN);
   * default $JOBTASK_GATEWAY_ADDR. */
  gatewayAddr?: string;
  /** More variables of the worker's environment the scripts see (beyond INHERITED);
   * default $JOBTASK_WORKER_PASS_ENV (comma-separated). WITHHELD ones never pass. */
  passEnv?: string[];
}

/** What a task inherits from the worker's environment (as the Python worker): the
 * locale, the time zone, where temporary files go, and how to reach the services. */
export const INHERITED: ReadonlySet<string> = new Set([
  "PATH",
  "LANG",
  "LANGUAGE",
  "TMPDIR",
  "TZ",
  "ARVADOS_API_HOST",
  "ARVADOS_API_HOST_INSECURE",
  "JOBTASK_TLS_CA",
]);
const INHERITED_PREFIXES = ["LC_"];
/** Never passed, even when an operator names them: the worker's and the cluster's secrets. */
export const WITHHELD: ReadonlySet<string> = new Set([
  "JOBTASK_TOKEN",
  "ARVADOS_API_TOKEN",
  "JOBTASK_SYSTEM_ROOT_TOKEN",
  "JOBTASK_DATABASE_URL",
]);

/** The part of the worker's environment a task may see: INHERITED, LC_*, and the names
 * the operator passes, minus WITHHELD (and minus JOB_PARAMETER_*, which the job sets). */
export function inherited(base: NodeJS.ProcessEnv, passEnv: Iterable<string> = []): NodeJS.ProcessEnv {
  const extra = new Set(passEnv);
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(base)) {
    const allowed =
      INHERITED.has(name) || INHERITED_PREFIXES.some((p) => name.startsWith(p)) || extra.has(name);
    if (allowed && !WITHHELD.has(name) && !name.startsWith("JOB_PARAMETER_")) env[name] = value;
  }
  return env;
}

export class ScriptError extends Error {
  /** No worker could run it (a name outside the scripts directory). */
  readonly permanent: boolean;
  constructor(message: string, permanent: boolean) {
    super(message);
    this.name = "ScriptError";
    this.permanent = permanent;
  }
}

/** The script's file, refusing names that lead outside the scripts directory. */
export function resolveScript(scriptsDir: string, script: string): string {
  if (!script || script.includes("\0")) {
    throw new ScriptError(`invalid script name ${JSON.stringify(script)}`, true);
  }
  const outside = () =>
    new ScriptError(`script ${JSON.stringify(script)} is outside the scripts directory ${scriptsDir}`, true);
  if (isAbsolute(script) || script.split(/[\\/]/).includes("..")) throw outside();
  if (!existsSync(scriptsDir)) {
    throw new ScriptError(`scripts directory ${scriptsDir} does not exist`, false);
  }
  const root = realpathSync(scriptsDir);
  const candidate = join(root, script);
  if (!existsSync(candidate)) {
    throw new ScriptError(`script ${JSON.stringify(script)} not found in ${scriptsDir}`, false);
  }
  const path = realpathSync(candidate);
  const rel = relative(root, path);
  if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) {
    throw outside(); // a symbolic link leading out
  }
  if (!statSync(path).isFile()) {
    throw new ScriptError(`script ${JSON.stringify(script)} in ${scriptsDir} is not a file`, false);
  }
  if (!path.endsWith(".py")) {
    try {
      accessSync(path, fsConstants.X_OK);
    } catch {
      throw new ScriptError(`script ${JSON.stringify(script)} in ${scriptsDir} is not executable`, false);
    }
  }
  return path;
}

/** A `.py` script runs under $JOBTASK_PYTHON unless it is an executable with a `#!` line. */
export function needsPython(path: string): boolean {
  if (!path.endsWith(".py")) {
    return false;
  }
  try {
    accessSync(path, fsConstants.X_OK);
  } catch {
    return true;
  }
  const head = Buffer.alloc(2);
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    return readSync(fd, head, 0, 2, 0) < 2 || head.toString("latin1") !== "#!";
  } catch {
    return true;
  } finally {
    if (fd !== undefined) {
      closeSync(fd);
    }
  }
}

/** A report line → its effect; undefined for blank and comment lines; throws if malformed. */
export function parseReport(
  line: string,
): { progress?: number; output?: string; success?: boolean } | undefined {
  const text = line.replace(/\r?\n$/, "");
  if (!text.trim() || text.trimStart().startsWith("#")) return undefined;
  const space = text.indexOf(" ");
  const word = space < 0 ? text : text.slice(0, space);
  const rest = space < 0 ? "" : text.slice(space + 1);
  switch (word) {
    case "progress": {
      const value = rest.trim() === "" ? NaN : Number(rest.trim());
      if (!Number.isFinite(value) || value < 0 || value > 1) {
        throw new Error(`progress must be a number between 0 and 1, not ${JSON.stringify(rest.trim())}`);
      }
      return { progress: value };
    }
    case "output":
      return { output: rest };
    case "output_json": {
      let value: unknown;
      try {
        value = JSON.parse(rest);
      } catch (err) {
        throw new Error(`output_json needs a JSON string: ${String(err)}`);
      }
      if (typeof value !== "string") throw new Error("output_json needs a JSON string");
      return { output: value };
    }
    case "success": {
      const verdict = rest.trim().toLowerCase();
      if (verdict !== "true" && verdict !== "false") {
        throw new Error(`success must be true or false, not ${JSON.stringify(rest.trim())}`);
      }
      return { success: verdict === "true" };
    }
    default:
      throw new Error(
        `unknown report ${JSON.stringify(word)} (expected progress, output, output_json, success)`,
      );
  }
}

/** Strings as they are; anything else as JSON. */
export function parameterValue(value: JsonValue): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function note(text: string): string {
  return `[jobtask-node-worker] ${text}\n`;
}

export class ScriptRunner {
  readonly scriptsDir: string;
  readonly crunchTmp: string;
  readonly python: string;
  readonly killGraceMs: number;
  readonly gatewayAddr: string | undefined;
  readonly passEnv: readonly string[];
  private readonly baseEnv: NodeJS.ProcessEnv;
  /** Running children by pid: killed if the worker process exits under them. */
  private readonly children = new Set<number>();

  constructor(options: ScriptRunnerOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    this.scriptsDir = resolve(options.scriptsDir || env.JOBTASK_SCRIPTS_DIR || "crunch_scripts");
    const workRoot = resolve(options.workDir || env.JOBTASK_WORK_DIR || tmpdir());
    this.crunchTmp = join(workRoot, `jobtask-node-worker-${process.pid}`);
    this.python = options.python || env.JOBTASK_PYTHON || "python3";
    this.killGraceMs = options.killGraceMs ?? 2000;
    this.gatewayAddr = options.gatewayAddr || env.JOBTASK_GATEWAY_ADDR || undefined;
    this.passEnv =
      options.passEnv ??
      (env.JOBTASK_WORKER_PASS_ENV ?? "")
        .split(",")
        .map((n) => n.trim())
        .filter((n) => n !== "");
    this.baseEnv = env;
    // Scripts lead their own process groups, so they would outlive a worker that exits
    // without stopping them (an uncaught error): kill them on the way out.
    process.once("exit", () => {
      for (const pid of this.children) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    });
  }

  /** The TaskHandler: `new Worker(runner.handle)`. */
  readonly handle: TaskHandler = (ctx) => this.run(ctx);

  /** Removes the worker's scratch directory (call after the worker stopped). */
  async cleanup(): Promise<void> {
    await rm(this.crunchTmp, { recursive: true, force: true });
  }

  environment(ctx: TaskContext, taskWork: string, jobWork: string): NodeJS.ProcessEnv {
    const { job, task, taskToken, config } = ctx;
    const env = inherited(this.baseEnv, this.passEnv);
    Object.assign(env, {
      JOB_UUID: job.uuid,
      CRUNCH_JOB_UUID: job.uuid,
      TASK_UUID: task.uuid,
      TASK_SEQUENCE: String(task.sequence),
      TASK_QSEQUENCE: String(task.qsequence),
      JOB_SCRIPT: job.script,
      TASK_WORK: taskWork,
      TASK_TMPDIR: taskWork,
      HOME: taskWork,
      JOB_WORK: jobWork,
      CRUNCH_WORK: jobWork,
      CRUNCH_TMP: this.crunchTmp,
      TASK_SLOT_NODE: config.nodeName,
      TASK_SLOT_NUMBER: String(ctx.slot),
      CRUNCH_NODE_SLOTS: String(config.slots),
      JOBTASK_JOBS_ADDR: config.jobsAddr,
      JOBTASK_TASKS_ADDR: config.tasksAddr,
      JOBTASK_TOKEN: taskToken,
      JOBTASK_REPORT_FD: String(REPORT_FD),
      // Live logs: Python scripts flush print() at once instead of at exit.
      PYTHONUNBUFFERED: this.baseEnv.PYTHONUNBUFFERED ?? "1",
    });
    for (const [name, value] of Object.entries(job.scriptParameters ?? {})) {
      if (name.includes("=") || name.includes("\0")) continue; // not a variable name
      env[`JOB_PARAMETER_${name.toUpperCase()}`] = parameterValue(value);
    }
    // The worker's own credentials never reach the task: it gets the task's token.
    delete env.ARVADOS_API_TOKEN;
    if (this.gatewayAddr) env.ARVADOS_API_HOST = this.gatewayAddr;
    if (env.ARVADOS_API_HOST) env.ARVADOS_API_TOKEN = taskToken;
    return env;
  }

  private async run(ctx: TaskContext): Promise<TaskExit> {
    let path: string;
    try {
      path = resolveScript(this.scriptsDir, ctx.job.script);
    } catch (err) {
      if (!(err instanceof ScriptError)) throw err;
      ctx.log(note(`cannot run the task: ${err.message}`));
      if (err.permanent) ctx.success(false);
      return { exitCode: EXIT_NOT_FOUND };
    }
    const taskWork = join(this.crunchTmp, "task", `${ctx.config.nodeName}.${ctx.slot}`);
    const jobWork = join(this.crunchTmp, "work", ctx.job.uuid);
    await rm(taskWork, { recursive: true, force: true });
    await mkdir(taskWork, { recursive: true });
    await mkdir(jobWork, { recursive: true });
    try {
      return await this.spawnScript(ctx, path, taskWork, jobWork);
    } finally {
      await rm(taskWork, { recursive: true, force: true });
    }
  }

  private spawnScript(
    ctx: TaskContext,
    path: string,
    taskWork: string,
    jobWork: string,
  ): Promise<TaskExit> {
    const [command, ...args] = needsPython(path) ? [this.python, path] : [path];
    return new Promise<TaskExit>((resolveExit) => {
      const child = spawn(command as string, args, {
        cwd: taskWork,
        env: this.environment(ctx, taskWork, jobWork),
        // stdin /dev/null; stdout, stderr; fd 3: the report descriptor.
        stdio: ["ignore", "pipe", "pipe", "pipe"],
        detached: true, // its own process group (and session): stopped as a whole
      });
      const timers: NodeJS.Timeout[] = [];
      let exited: TaskExit | undefined;
      let settled = false;
      const finish = (result: TaskExit) => {
        if (settled) return;
        settled = true;
        for (const timer of timers) clearTimeout(timer);
        ctx.signal.removeEventListener("abort", onAbort);
        if (child.pid !== undefined) this.children.delete(child.pid);
        resolveExit(result);
      };
      const group = (signal: NodeJS.Signals) => {
        if (child.pid === undefined || settled) return;
        try {
          process.kill(-child.pid, signal);
        } catch {
          // the group is gone
        }
      };
      const onAbort = () => {
        const reason: unknown = ctx.signal.reason;
        if (reason instanceof TaskStopped && reason.kind === "stop") {
          group("SIGKILL");
          return;
        }
        group("SIGINT");
        timers.push(setTimeout(() => group("SIGTERM"), this.killGraceMs));
        timers.push(setTimeout(() => group("SIGKILL"), 2 * this.killGraceMs));
      };

      child.on("error", (err: NodeJS.ErrnoException) => {
        // Spawning failed (no interpreter, not executable): there is no process.
        ctx.log(note(`cannot start ${path}: ${err.message}`));
        finish({ exitCode: err.code === "ENOENT" ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN });
      });
      if (child.pid === undefined) return; // the error event follows
      this.children.add(child.pid);
      if (ctx.signal.aborted) onAbort();
      else ctx.signal.addEventListener("abort", onAbort, { once: true });

      for (const stream of [child.stdout, child.stderr]) {
        const decoder = new StringDecoder("utf8");
        stream?.on("data", (chunk: Buffer) => ctx.log(decoder.write(chunk)));
        stream?.on("end", () => ctx.log(decoder.end()));
      }
      const reports = child.stdio[REPORT_FD];
      if (reports && "on" in reports) {
        const lines = createInterface({ input: reports as NodeJS.ReadableStream, crlfDelay: Infinity });
        lines.on("line", (line) => {
          let report;
          try {
            report = parseReport(line);
          } catch (err) {
            ctx.log(note(`ignored report line ${JSON.stringify(line)}: ${(err as Error).message}`));
            return;
          }
          if (report?.progress !== undefined) ctx.progress(report.progress);
          if (report?.output !== undefined) ctx.output(report.output);
          if (report?.success !== undefined) ctx.success(report.success);
        });
      }
      child.on("exit", (code, signal) => {
        exited =
          signal !== null
            ? { signal: osConstants.signals[signal] ?? 9 }
            : { exitCode: code ?? 0 };
        // Stragglers holding the pipes: stop reading them after a while.
        timers.push(
          setTimeout(() => {
            group("SIGKILL");
            child.stdout?.destroy();
            child.stderr?.destroy();
            (child.stdio[REPORT_FD] as NodeJS.ReadableStream & { destroy(): void } | null)?.destroy();
            if (exited) finish(exited);
          }, DRAIN_MS),
        );
      });
      // Every pipe closed: all output and every report has been read.
      child.on("close", () => {
        if (exited) finish(exited);
      });
    });
  }
}
