'use strict';
// Errors: every failure of the SDK is a MehrError subclass carrying the gRPC code the daemon
// (or the connection) gave and the daemon's ErrorInfo reason. The native addon encodes them
// as `MEHR_ERROR:{json}` messages (src/failure.rs); `translate` turns those into classes.

const CODE_NAMES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
  'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED',
  'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];

/** A failed call: `code` is the gRPC code name, `reason` the daemon's stable reason. */
class MehrError extends Error {
  constructor(message, { grpcCode = 2, reason = null, domain = null, metadata = {}, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = this.constructor.name;
    this.grpcCode = grpcCode;
    this.code = CODE_NAMES[grpcCode] ?? 'UNKNOWN';
    this.reason = reason;
    this.domain = domain;
    this.metadata = metadata;
  }
}

const classes = {};
const SUBCLASS_NAMES = {
  CANCELLED: 'CancelledError', UNKNOWN: 'UnknownError', INVALID_ARGUMENT: 'InvalidArgumentError',
  DEADLINE_EXCEEDED: 'DeadlineExceededError', NOT_FOUND: 'NotFoundError',
  ALREADY_EXISTS: 'AlreadyExistsError', PERMISSION_DENIED: 'PermissionDeniedError',
  RESOURCE_EXHAUSTED: 'ResourceExhaustedError', FAILED_PRECONDITION: 'FailedPreconditionError',
  ABORTED: 'AbortedError', OUT_OF_RANGE: 'OutOfRangeError', UNIMPLEMENTED: 'UnimplementedError',
  INTERNAL: 'InternalError', UNAVAILABLE: 'UnavailableError', DATA_LOSS: 'DataLossError',
  UNAUTHENTICATED: 'UnauthenticatedError',
};
for (const [code, name] of Object.entries(SUBCLASS_NAMES)) {
  classes[code] = { [name]: class extends MehrError {} }[name];
}

const MARKER = 'MEHR_ERROR:';

/** The MehrError for an error thrown by the native addon (others are returned unchanged). */
function translate(error) {
  if (!(error instanceof Error) || error instanceof MehrError) return error;
  const at = error.message.indexOf(MARKER);
  if (at < 0) return error;
  let record;
  try {
    record = JSON.parse(error.message.slice(at + MARKER.length));
  } catch {
    return error;
  }
  const name = CODE_NAMES[record.code] ?? 'UNKNOWN';
  const Class = classes[name] ?? MehrError;
  return new Class(`${name}: ${record.message}`, {
    grpcCode: record.code,
    reason: record.reason ?? null,
    domain: record.domain ?? null,
    metadata: record.metadata ?? {},
  });
}

module.exports = { MehrError, translate, CODE_NAMES, ...classes };
for (const [code, name] of Object.entries(SUBCLASS_NAMES)) module.exports[name] = classes[code];
