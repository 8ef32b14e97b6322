/**
 * A jobtask worker in Node: opens one WorkerSession stream, gets tasks pushed into its free
 * slots and runs each job's script from the scripts directory as a child process, sending
 * its log, progress, output and verdict up the session (one heartbeat every lease ttl / 3
 * for all of them), and stopping it on CANCEL/STOP.
 *
 *   node dist/examples/worker.js
 *
 * Configuration (the same variables as `jobtask worker`):
 *   JOBTASK_JOBS_ADDR, JOBTASK_TASKS_ADDR   the services (127.0.0.1:50051, 127.0.0.1:50052)
 *   JOBTASK_TOKEN                           a worker token (`jobtask token create --worker`)
 *   JOBTASK_SCRIPTS_DIR                     the job scripts (./crunch_scripts)
 *   JOBTASK_NODE_NAME                       this machine's name (the host name)
 *   JOBTASK_WORKER_SLOTS                    tasks run at once (1)
 *   JOBTASK_WORKER_ID, JOBTASK_WORK_DIR, JOBTASK_PYTHON (interpreter for *.py scripts)
 *   JOBTASK_WORKER_PASS_ENV                 more of the worker's variables the scripts see
 *                                           (comma-separated; they get PATH, LANG, LC_*,
 *                                           TZ, TMPDIR and the like, never a credential)
 *   JOBTASK_WORKER_PROTOCOL                 session (default), or stream: ClaimTask
 *                                           long-polls and a RunTask stream per task
 *   JOBTASK_CLAIM_WAIT                      seconds per long poll (stream), 10
 *
 * SIGINT or SIGTERM stops it gracefully: no more claims, running scripts are interrupted
 * and their tasks handed back (queued again, unfailed).
 */

import { ScriptRunner, Worker } from "../src/index.js";

const claimWait = Number(process.env.JOBTASK_CLAIM_WAIT ?? "10");
const runner = new ScriptRunner();
const worker = new Worker(runner.handle, {
  claimWaitSeconds: Number.isFinite(claimWait) && claimWait >= 0 ? claimWait : 10,
});
process.stderr.write(`scripts from ${runner.scriptsDir}\n`);

const stop = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`${signal}: stopping (running tasks are handed back)\n`);
    stop.abort();
  });
}
try {
  await worker.run(stop.signal);
} finally {
  await runner.cleanup();
}
