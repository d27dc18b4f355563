// The ESM entry point: the same objects as the CommonJS one (one module instance).
import sdk from './index.cjs';

export const {
  connect, Client, Server, MehrError, CancelledError, UnknownError, InvalidArgumentError,
  DeadlineExceededError, NotFoundError, AlreadyExistsError, PermissionDeniedError,
  ResourceExhaustedError, FailedPreconditionError, AbortedError, OutOfRangeError,
  UnimplementedError, InternalError, UnavailableError, DataLossError, UnauthenticatedError,
} = sdk;
export default sdk;
