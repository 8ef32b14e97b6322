/**
 * The worker's lease clock: the server renews a lease when it processes the worker's message
 * (a report, a RunTask heartbeat, the session's heartbeat), not when its answer reaches the
 * worker. A renewal must be dated by when the answered message was sent, so that a slow
 * answer cannot push the watchdog's "lease gone, kill the process" moment past the server's
 * expiry. A fake clock (the worker's own, injected) makes the slow answer: it moves on
 * between the send and the answer.
 *
 * The first test feeds a lease its answers by hand. The others are the real WorkerSession
 * and TaskStream against a real TaskService: tests/polyglot (test_typescript_client.py)
 * starts `jobtask up`, submits jobs so that tasks are runnable, and runs these tests with
 * $JOBTASK_TEST_TASKS_ADDR and a worker's $JOBTASK_TEST_WORKER_TOKEN; without them (a bare
 * `npm test`) those tests are skipped. An interceptor on the worker's connection moves the
 * fake clock on as the chosen message leaves for the server: after the worker dated it,
 * before the server can have answered it.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { create, isMessage } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { bearerToken, JobtaskClient } from "../src/client.js";
import { baseUrl, clientConfig } from "../src/config.js";
import {
  Instruction,
  RunTaskRequestSchema,
  TaskAssignmentSchema,
  TaskService,
  TaskUpdateSchema,
  WorkerSessionRequestSchema,
  WorkerSessionResponseSchema,
} from "../src/gen/jobtask/v1/task_service_pb.js";
import { HEARTBEAT_INTERVAL_MS, type SessionLease, WorkerSession } from "../src/session.js";
import { monotonicNow, TaskStream } from "../src/task-stream.js";

const TTL_MS = 9000;
const DEADLINE_MS = 30_000;
/** How late (by the fake clock) the server's answer comes. */
const LATE_MS = 6000;
const LEASE = { leaseId: "lease-1", ttl: { seconds: BigInt(TTL_MS / 1000) } };
const ASSIGNMENT = { task: { uuid: "task-1" }, lease: LEASE };
/** The real TaskService and a worker's token, which tests/polyglot passes (variables of
 * their own: a worker's $JOBTASK_TASKS_ADDR may well name a cluster in use). */
const SERVER = {
  tasksAddr: process.env.JOBTASK_TEST_TASKS_ADDR,
  token: process.env.JOBTASK_TEST_WORKER_TOKEN,
};
const NEEDS_SERVER = {
  skip: SERVER.tasksAddr && SERVER.token ? false : "needs a jobtask server: run by tests/polyglot",
  timeout: 2 * DEADLINE_MS,
};

class FakeClock {
  t = 1_000_000;
  readonly now = (): number => this.t;
}

/** Waits (in real time, generously) until `condition` holds; rethrows what `failed` holds. */
async function until(
  condition: () => boolean,
  what: string,
  failed: () => unknown = () => undefined,
): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!condition()) {
    const error = failed();
    if (error !== undefined) throw error;
    assert.ok(Date.now() < deadline, `gave up waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The worker's connection to the real TaskService (SERVER), as JobtaskClient makes it, and
 * on it: the first request that `slow` picks moves `clock` on by LATE_MS as it leaves (after
 * the worker read the clock to date it, before the server can answer it: its answer comes
 * late), and every answer the worker has processed is kept in `processed` (an answer is kept
 * once the worker asks for the next). */
function lateAnswers(clock: FakeClock, slow: (request: unknown) => boolean) {
  const config = clientConfig(SERVER);
  const processed: unknown[] = [];
  const sent: unknown[] = [];
  let moved = false;
  async function* outgoing<T>(requests: AsyncIterable<T>): AsyncGenerator<T> {
    for await (const request of requests) {
      sent.push(request);
      if (!moved && slow(request)) {
        moved = true;
        clock.t += LATE_MS;
      }
      yield request;
    }
  }
  async function* incoming<T>(responses: AsyncIterable<T>): AsyncGenerator<T> {
    for await (const response of responses) {
      yield response;
      processed.push(response);
    }
  }
  const hook: Interceptor = (next) => async (req) => {
    if (!req.stream) return next(req);
    const res = await next({ ...req, message: outgoing(req.message) });
    return res.stream ? { ...res, message: incoming(res.message) } : res;
  };
  const service = createClient(
    TaskService,
    createGrpcTransport({
      baseUrl: baseUrl(config.tasksAddr),
      interceptors: [bearerToken(config.token ?? ""), hook],
    }),
  );
  return { service, processed, sent };
}

test("an acknowledged session report renews the lease as of when it was sent", () => {
  const clock = new FakeClock();
  // Never called: the lease is fed its answers here.
  const nowhere = createGrpcTransport({ baseUrl: "http://127.0.0.1:1" });
  const service = createClient(TaskService, nowhere);
  const session = new WorkerSession(service, () => ({}), () => {}, () => {}, clock.now);
  const lease = session.lease(create(TaskAssignmentSchema, ASSIGNMENT));
  try {
    clock.t += 2000;
    lease.send({ progress: 0.5 });
    const sent = clock.t;
    clock.t += LATE_MS; // the answer comes late
    lease.receive(create(TaskUpdateSchema, { taskUuid: "task-1", ackedSeq: 1n, lease: LEASE }));
    assert.equal(lease.renewedAt, sent);
    // An answer that acknowledges nothing new (a CANCEL, say) renews nothing.
    clock.t += 1000;
    lease.receive(
      create(TaskUpdateSchema, {
        taskUuid: "task-1",
        ackedSeq: 1n,
        instruction: Instruction.CANCEL,
        lease: LEASE,
      }),
    );
    assert.equal(lease.renewedAt, sent);
  } finally {
    lease.close();
  }
});

test("leases are timed by a monotonic clock: a wall-clock step moves no lease", async () => {
  // Never called: nothing is sent here.
  const nowhere = createGrpcTransport({ baseUrl: "http://127.0.0.1:1" });
  const service = createClient(TaskService, nowhere);
  const session = new WorkerSession(service, () => ({}), () => {}, () => {});
  const lease = session.lease(create(TaskAssignmentSchema, ASSIGNMENT));
  const stream = new TaskStream(service, "task-2", "lease-2");
  // Its connection to nowhere fails: read here, where the failure is expected.
  const drained = (async () => {
    try {
      for await (const _ of stream);
    } catch {
      // refused, or canceled by close()
    }
  })();
  const wallClock = Date.now;
  try {
    const before = [lease.now(), stream.clock(), monotonicNow()];
    // NTP steps the wall clock an hour ahead (or a suspended VM resyncs it): by the wall
    // clock, every lease would be an hour unrenewed and its task stopped at once.
    const step = 3_600_000;
    Date.now = () => wallClock() + step;
    const after = [lease.now(), stream.clock(), monotonicNow()];
    for (const [i, t] of after.entries()) {
      assert.ok(t - before[i] < step / 2, `clock ${i} moved ${t - before[i]} ms`);
    }
    assert.ok(lease.now() - lease.renewedAt < step / 2);
    assert.ok(stream.clock() - stream.renewedAt < step / 2);
  } finally {
    Date.now = wallClock;
    lease.close();
    stream.close();
    await drained;
  }
});

test("heartbeats the server answered together do not date later renewals too early", () => {
  const clock = new FakeClock();
  const nowhere = createGrpcTransport({ baseUrl: "http://127.0.0.1:1" });
  const service = createClient(TaskService, nowhere);
  const session = new WorkerSession(service, () => ({}), () => {}, () => {}, clock.now);
  const lease = session.lease(create(TaskAssignmentSchema, ASSIGNMENT));
  // The session's own state: when its unanswered heartbeats were sent, and its reader.
  const inside = session as unknown as {
    beats: number[];
    receive(response: unknown): void;
  };
  const answer = () =>
    create(WorkerSessionResponseSchema, {
      heartbeatAcked: true,
      updates: [create(TaskUpdateSchema, { taskUuid: "task-1", lease: LEASE })],
    });
  try {
    const t = clock.t;
    inside.beats.push(t + 1000, t + 2000); // two beats sent; the server merged them
    clock.t += 5000;
    inside.receive(answer());
    assert.equal(lease.renewedAt, t + 1000);
    inside.beats.push(t + 3000); // the next beat
    inside.receive(answer());
    assert.equal(lease.renewedAt, t + 3000); // not t + 2000, which the server had answered
  } finally {
    lease.close();
  }
});

test("a message's leases are dated by its arrival, however long each start takes", () => {
  const clock = new FakeClock();
  const nowhere = createGrpcTransport({ baseUrl: "http://127.0.0.1:1" });
  const service = createClient(TaskService, nowhere);
  const leases: SessionLease[] = [];
  const session: WorkerSession = new WorkerSession(
    service,
    () => ({}),
    (assignment) => {
      leases.push(session.lease(assignment));
      clock.t += 2000; // starting the task (a spawn) took two seconds
    },
    () => {},
    clock.now,
  );
  const inside = session as unknown as { receive(response: unknown): void };
  const second = { task: { uuid: "task-2" }, lease: { ...LEASE, leaseId: "lease-2" } };
  try {
    const arrived = clock.t;
    inside.receive(
      create(WorkerSessionResponseSchema, {
        assignments: [
          create(TaskAssignmentSchema, ASSIGNMENT),
          create(TaskAssignmentSchema, second),
        ],
      }),
    );
    assert.deepEqual(
      leases.map((lease) => lease.renewedAt),
      [arrived, arrived],
    );
    // A lease made outside a message (no arrival to date it by) is dated when it is made.
    const third = session.lease(
      create(TaskAssignmentSchema, {
        task: { uuid: "task-3" },
        lease: { ...LEASE, leaseId: "lease-3" },
      }),
    );
    leases.push(third);
    assert.equal(third.renewedAt, clock.t);
  } finally {
    for (const lease of leases) lease.close();
  }
});

const SESSION_HEARTBEAT =
  "the session heartbeat's late answer renews the leases as of when it was sent";
test(SESSION_HEARTBEAT, NEEDS_SERVER, async () => {
  const clock = new FakeClock();
  const { service, processed } = lateAnswers(
    clock,
    (r) => isMessage(r, WorkerSessionRequestSchema) && r.heartbeat,
  );
  const session: WorkerSession = new WorkerSession(
    service,
    () => ({ workerId: "renewals-session", nodeName: "renewals", freeSlots: 1, slots: 1 }),
    (assignment) => void session.lease(assignment),
    () => {},
    clock.now,
    // No idle heartbeat of its own: the fake clock's jump after the first would make one
    // due at once, and its answer could renew the lease again before the check below.
    3_600_000,
  );
  let failed: unknown;
  const running = session.run().catch((err: unknown) => {
    failed = err;
  });
  try {
    await until(() => session.leases.size > 0, "a task assigned", () => failed);
    const [lease] = session.leases.values();
    assert.ok(lease !== undefined && lease.lostReason === undefined);
    // The server's lease is long (a minute): only the fake clock makes a heartbeat due, a
    // third of the ttl on (and LATE_MS later, none is due yet).
    assert.ok(lease.ttlMs / 3 > LATE_MS, `a lease of ${lease.ttlMs} ms`);
    const before = lease.renewedAt;
    clock.t += lease.ttlMs / 3;
    const sent = clock.t;
    const heartbeatAcked = () =>
      processed.some((r) => isMessage(r, WorkerSessionResponseSchema) && r.heartbeatAcked);
    await until(heartbeatAcked, "the heartbeat's answer", () => failed);
    assert.ok(clock.t >= sent + LATE_MS, "the heartbeat's answer came late");
    assert.equal(lease.lostReason, undefined);
    assert.ok(before < sent);
    assert.equal(lease.renewedAt, sent);
  } finally {
    session.abandon();
    await running;
  }
});

const STREAM_HEARTBEAT =
  "a RunTask heartbeat's late answer renews the lease as of when it was sent";
test(STREAM_HEARTBEAT, NEEDS_SERVER, async () => {
  const clock = new FakeClock();
  const { service } = lateAnswers(clock, (r) => isMessage(r, RunTaskRequestSchema) && r.seq > 0n);
  const client = JobtaskClient.connect(SERVER);
  let assignments;
  try {
    assignments = await client.claim(
      { workerId: "renewals-stream", nodeName: "renewals", freeSlots: 1, slots: 1 },
      { waitSeconds: DEADLINE_MS / 1000 },
    );
  } finally {
    client.close();
  }
  const [assignment] = assignments;
  assert.ok(assignment?.task !== undefined && assignment.lease !== undefined, "a task claimed");
  const { task, lease } = assignment;
  const stream = new TaskStream(service, task.uuid, lease.leaseId, clock.now);
  const responses = stream[Symbol.asyncIterator]();
  try {
    clock.t += 2000;
    const sent = clock.t;
    const seq = stream.heartbeat();
    for (;;) {
      const response = await responses.next();
      assert.ok(!response.done, "the stream ended");
      assert.notEqual(response.value.instruction, Instruction.STOP);
      if (response.value.ackedSeq >= seq) break;
    }
    assert.ok(clock.t >= sent + LATE_MS, "the heartbeat's answer came late");
    assert.equal(stream.renewedAt, sent);
  } finally {
    stream.close();
    await responses.return(undefined);
  }
});

const IDLE_HEARTBEAT = "an idle session promises a message every interval and keeps its promise";
test(IDLE_HEARTBEAT, NEEDS_SERVER, async () => {
  // A stopped worker keeps its connection: only its promised messages tell the server it
  // is not hung, which then assigns it nothing (see the Python worker's tests/workers).
  const clock = new FakeClock();
  const { service, processed, sent } = lateAnswers(clock, () => false);
  const session = new WorkerSession(
    service,
    // No free slot: nothing is assigned, the session holds no lease.
    () => ({ workerId: "renewals-idle", nodeName: "renewals", freeSlots: 0, slots: 1 }),
    () => assert.fail("nothing should be assigned"),
    () => {},
    clock.now,
  );
  let failed: unknown;
  const running = session.run().catch((err: unknown) => {
    failed = err;
  });
  const requests = () => sent.filter((r) => isMessage(r, WorkerSessionRequestSchema));
  try {
    await until(() => requests().length > 0, "the session opened", () => failed);
    const interval = requests()[0]?.open?.heartbeatInterval;
    assert.ok(interval !== undefined, "the open message states its interval");
    assert.equal(durationMs(interval), HEARTBEAT_INTERVAL_MS);
    // Real time alone sends nothing (the fake clock stands still) ...
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.equal(requests().filter((r) => r.heartbeat).length, 0);
    // ... the interval passing does, leases or not, and the server answers it.
    clock.t += HEARTBEAT_INTERVAL_MS;
    await until(() => requests().some((r) => r.heartbeat), "an idle heartbeat", () => failed);
    const heartbeatAcked = () =>
      processed.some((r) => isMessage(r, WorkerSessionResponseSchema) && r.heartbeatAcked);
    await until(heartbeatAcked, "the heartbeat's answer", () => failed);
    assert.equal(session.leases.size, 0);
  } finally {
    session.abandon();
    await running;
  }
});
