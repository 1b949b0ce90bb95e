/**
 * The TypeScript example (docs/clients.md): ingests a batch, reads recommendations and
 * handles a rejected batch, printing one JSON line per step. Exits 1 on any other outcome.
 *
 *   MAGNETAR_ADDRESS=127.0.0.1:50051 MAGNETAR_INGEST_KEY=... MAGNETAR_READ_KEY=... \
 *     MAGNETAR_USER=u-42 npm run example
 */
import { randomUUID } from "crypto";
import type { ServiceError } from "@grpc/grpc-js";
import { bearer, call, connect, describeFailure } from "./magnetar";
import type { Event } from "./generated/magnetar/v1/Event";
import type { IngestRequest } from "./generated/magnetar/v1/IngestRequest";
import type { IngestResponse__Output } from "./generated/magnetar/v1/IngestResponse";
import type { RecommendRequest } from "./generated/magnetar/v1/RecommendRequest";
import type { RecommendResponse__Output } from "./generated/magnetar/v1/RecommendResponse";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

function now(): { seconds: string; nanos: number } {
  const ms = Date.now();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

async function main(): Promise<void> {
  const clients = connect(process.env.MAGNETAR_ADDRESS ?? "127.0.0.1:50051");
  const ingestKey = bearer(required("MAGNETAR_INGEST_KEY"));
  const readKey = bearer(required("MAGNETAR_READ_KEY"));
  const user = process.env.MAGNETAR_USER ?? "ts-user";
  const events = clients.events;
  try {
    // 1. A batch: a view, a cart and a purchase of one item.
    const batch: Event[] = (["EVENT_TYPE_VIEW", "EVENT_TYPE_ADD_TO_CART", "EVENT_TYPE_PURCHASE"] as const).map(
      (type) => ({
        eventId: randomUUID(),
        userId: user,
        type,
        itemId: "tent",
        occurredAt: now(),
        value: type === "EVENT_TYPE_VIEW" ? 0 : 129.5,
        context: { userAgent: "magnetar-ts-example" },
      }),
    );
    const ingested = await call<IngestRequest, IngestResponse__Output>(
      events.ingest.bind(events), { events: batch }, ingestKey);
    console.log(JSON.stringify({
      step: "ingest",
      accepted: ingested.acceptedCount,
      rejected: ingested.rejectedEvents.length,
    }));

    // 2. Recommendations for the same user, leaving out what they already bought.
    const personalization = clients.personalization;
    const recommended = await call<RecommendRequest, RecommendResponse__Output>(
      personalization.recommend.bind(personalization), { userId: user, k: 3, filter: { excludePurchased: true } }, readKey);
    console.log(JSON.stringify({
      step: "recommend",
      coldStart: recommended.coldStart,
      items: recommended.items.map((item) => ({
        itemId: item.itemId,
        reason: item.reason?.kind,
        text: item.reason?.text,
      })),
    }));

    // 3. A rejection: with allOrNothing, an event without `occurred_at` fails the batch
    // with INVALID_ARGUMENT, and the status details name the field to fix.
    const invalid: Event[] = [
      { eventId: randomUUID(), userId: user, type: "EVENT_TYPE_VIEW", itemId: "tent", occurredAt: now() },
      { eventId: randomUUID(), userId: user, type: "EVENT_TYPE_VIEW", itemId: "tent" },
    ];
    try {
      await call<IngestRequest, IngestResponse__Output>(
        events.ingest.bind(events), { events: invalid, allOrNothing: true }, ingestKey);
      throw new Error("an invalid all-or-nothing batch was accepted");
    } catch (error) {
      if (!(error as ServiceError).metadata) {
        throw error;
      }
      const failure = describeFailure(error as ServiceError);
      console.log(JSON.stringify({
        step: "rejection",
        code: failure.code,
        reason: failure.reason,
        violations: failure.fieldViolations,
      }));
    }
  } finally {
    clients.close();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
