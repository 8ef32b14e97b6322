/**
 * The worker's lease clock: the server renews a lease when it processes the worker's message
 * (a report, a RunTask heartbeat, the session's heartbeat), not when its answer reaches the
 * worker. A renewal must be dated by when the answered message was sent, so that a slow
 * answer cannot push the watchdog's "lease gone, kill the process" moment past the server's
 * expiry. A fake clock makes the slow answer: it moves between the send and the answer.
 *
 * The server's side is a scripted TaskService on connect's in-memory router transport, so
 * the real WorkerSession and TaskStream send, receive and route every message.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { createClient, createRouterTransport, type ConnectRouter } from "@connectrpc/connect";

import {
  Instruction,
  TaskAssignmentSchema,
  TaskService,
  TaskUpdateSchema,
  type RunTaskRequest,
  type WorkerSessionRequest,
} from "../src/gen/jobtask/v1/task_service_pb.js";
import { WorkerSession } from "../src/session.js";
import { TaskStream } from "../src/task-stream.js";

const TTL_MS = 9000;
const DEADLINE_MS = 30_000;
const LEASE = { leaseId: "lease-1", ttl: { seconds: BigInt(TTL_MS / 1000) } };
const ASSIGNMENT = { task: { uuid: "task-1" }, lease: LEASE };

class FakeClock {
  t = 1_000_000;
  readonly now = (): number => this.t;
}

/** A promise with its resolve at hand. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Waits (in real time, generously) until `condition` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `gave up waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The next request of a stream whose `pick` holds (the others are skipped). */
async function next<T>(requests: AsyncIterator<T>, pick: (r: T) => boolean): Promise<T> {
  for (;;) {
    const { value, done } = await requests.next();
    assert.ok(!done, "the worker ended its stream");
    if (pick(value)) return value;
  }
}

function tasks(routes: (router: ConnectRouter) => void) {
  return createClient(TaskService, createRouterTransport(routes));
}

function noServer() {
  return tasks(() => {});
}

test("an acknowledged session report renews the lease as of when it was sent", () => {
  const clock = new FakeClock();
  const session = new WorkerSession(noServer(), () => ({}), () => {}, () => {}, clock.now);
  const lease = session.lease(create(TaskAssignmentSchema, ASSIGNMENT));
  try {
    clock.t += 2000;
    lease.send({ progress: 0.5 });
    const sent = clock.t;
    clock.t += 6000; // the answer comes late
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

test("the session heartbeat's answer renews the leases as of when it was sent", async () => {
  const clock = new FakeClock();
  const heartbeatSeen = gate();
  const answer = gate();
  let heartbeatAt: number | undefined;
  const service = tasks((router) =>
    router.service(TaskService, {
      async *workerSession(requests: AsyncIterable<WorkerSessionRequest>) {
        const incoming = requests[Symbol.asyncIterator]();
        await next(incoming, (r) => r.open !== undefined);
        yield { assignments: [ASSIGNMENT] };
        await next(incoming, (r) => r.heartbeat);
        heartbeatSeen.open();
        await answer.promise;
        yield { heartbeatAcked: true, updates: [{ taskUuid: "task-1", lease: LEASE }] };
        for await (const _ of { [Symbol.asyncIterator]: () => incoming });
      },
    }),
  );
  const session = new WorkerSession(
    service,
    () => ({ workerId: "w", freeSlots: 1 }),
    (assignment) => {
      session.lease(assignment);
      // A third of the ttl later (by the fake clock) the heartbeat is due.
      clock.t += TTL_MS / 3;
      heartbeatAt = clock.t;
    },
    () => {},
    clock.now,
  );
  const running = session.run();
  try {
    await heartbeatSeen.promise;
    const lease = session.leases.get("task-1");
    assert.ok(lease !== undefined && heartbeatAt !== undefined);
    const before = lease.renewedAt;
    assert.ok(before < heartbeatAt);
    clock.t += 2 * (TTL_MS / 3); // the answer comes late
    answer.open();
    await until(() => lease.renewedAt !== before, "the heartbeat's answer");
    assert.equal(lease.renewedAt, heartbeatAt);
  } finally {
    session.abandon();
    await running;
  }
});

test("an acknowledged RunTask heartbeat renews the lease as of when it was sent", async () => {
  const clock = new FakeClock();
  const heartbeatSeen = gate();
  const answer = gate();
  const service = tasks((router) =>
    router.service(TaskService, {
      async *runTask(requests: AsyncIterable<RunTaskRequest>) {
        const incoming = requests[Symbol.asyncIterator]();
        await next(incoming, (r) => r.seq === 0n); // the opening message
        const heartbeat = await next(incoming, (r) => r.seq > 0n);
        heartbeatSeen.open();
        await answer.promise;
        yield { ackedSeq: heartbeat.seq, lease: LEASE };
        for await (const _ of { [Symbol.asyncIterator]: () => incoming });
      },
    }),
  );
  const stream = new TaskStream(service, "task-1", "lease-1", clock.now);
  const responses = stream[Symbol.asyncIterator]();
  try {
    const first = responses.next();
    clock.t += TTL_MS / 3;
    const sent = clock.t;
    stream.heartbeat();
    await heartbeatSeen.promise;
    clock.t += 2 * (TTL_MS / 3); // the answer comes late
    answer.open();
    const response = await first;
    assert.ok(!response.done);
    assert.equal(stream.renewedAt, sent);
  } finally {
    stream.close();
    await responses.return(undefined);
  }
});
