/**
 * Magnetar's gRPC services for Node: stubs loaded from proto/ with @grpc/proto-loader,
 * typed by the interfaces `npm run generate` writes into src/generated, and the
 * `google.rpc.Status` details of a failed call decoded from its trailers.
 */
import * as path from "path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";
import type { ProtoGrpcType as EventProtos } from "./generated/event_service";
import type { ProtoGrpcType as PersonalizationProtos } from "./generated/personalization_service";
import type { EventServiceClient } from "./generated/magnetar/v1/EventService";
import type { PersonalizationServiceClient } from "./generated/magnetar/v1/PersonalizationService";

/** The repository's proto/ (override with MAGNETAR_PROTO_DIR when the example is moved). */
const PROTO_DIR = process.env.MAGNETAR_PROTO_DIR ?? path.resolve(__dirname, "..", "..", "..", "proto");
/** google/rpc/*.proto, as shipped by the google-proto-files package. */
const GOOGLE_PROTOS = path.dirname(require.resolve("google-proto-files/package.json"));

const LOADER_OPTIONS: protoLoader.Options = {
  // Must match the `generate` script's flags, which shape the generated types.
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR, GOOGLE_PROTOS],
};

export interface Clients {
  events: EventServiceClient;
  personalization: PersonalizationServiceClient;
  close(): void;
}

/** Stubs for the ingestion and serving services over one plaintext channel to `address`. */
export function connect(address: string): Clients {
  const definition = protoLoader.loadSync(
    ["magnetar/v1/event_service.proto", "magnetar/v1/personalization_service.proto"],
    LOADER_OPTIONS,
  );
  const loaded = grpc.loadPackageDefinition(definition) as unknown as EventProtos &
    PersonalizationProtos;
  const credentials = grpc.credentials.createInsecure();
  const events = new loaded.magnetar.v1.EventService(address, credentials);
  const personalization = new loaded.magnetar.v1.PersonalizationService(address, credentials, {
    channelOverride: events.getChannel() as grpc.Channel,
  });
  return { events, personalization, close: () => events.close() };
}

/** The `authorization: Bearer <key>` metadata every call needs. */
export function bearer(apiKey: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${apiKey}`);
  return metadata;
}

/** A field violation of `google.rpc.BadRequest`. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** What a failed call says in `google.rpc.Status`: the code and the details to act on. */
export interface CallFailure {
  code: string;
  message: string;
  reason?: string;
  metadata: Record<string, string>;
  fieldViolations: FieldViolation[];
}

let statusTypes: protobuf.Root | undefined;

function rpcTypes(): protobuf.Root {
  if (statusTypes === undefined) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => path.join(GOOGLE_PROTOS, target);
    statusTypes = root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"]);
  }
  return statusTypes;
}

/** Reads the `grpc-status-details-bin` trailer of a failed call (ErrorInfo, BadRequest). */
export function describeFailure(error: grpc.ServiceError): CallFailure {
  const failure: CallFailure = {
    code: grpc.status[error.code],
    message: error.details,
    metadata: {},
    fieldViolations: [],
  };
  const [encoded] = error.metadata?.get("grpc-status-details-bin") ?? [];
  if (!(encoded instanceof Buffer)) {
    return failure;
  }
  const types = rpcTypes();
  const status = types.lookupType("google.rpc.Status").decode(encoded) as unknown as {
    details: { type_url: string; value: Uint8Array }[];
  };
  for (const detail of status.details) {
    const typeName = detail.type_url.slice(detail.type_url.lastIndexOf("/") + 1);
    const decoded = types.lookupType(typeName).decode(detail.value) as unknown as Record<
      string,
      unknown
    >;
    if (typeName === "google.rpc.ErrorInfo") {
      failure.reason = decoded.reason as string;
      failure.metadata = (decoded.metadata as Record<string, string>) ?? {};
    } else if (typeName === "google.rpc.BadRequest") {
      failure.fieldViolations = (
        (decoded.fieldViolations as FieldViolation[] | undefined) ?? []
      ).map((v) => ({ field: v.field, description: v.description }));
    }
  }
  return failure;
}

/** A unary call as a promise: resolves with the reply, rejects with the ServiceError. */
export function call<Req, Res>(
  method: (
    request: Req,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<Res>,
  ) => grpc.ClientUnaryCall,
  request: Req,
  metadata: grpc.Metadata,
  timeoutMs = 10_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method(request, metadata, { deadline: Date.now() + timeoutMs }, (error, reply) => {
      if (error) {
        reject(error);
      } else {
        resolve(reply as Res);
      }
    });
  });
}
