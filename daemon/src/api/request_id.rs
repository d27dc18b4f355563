//! Idempotency keys (`request_id`) of the calls that move money or place data (Pay,
//! OpenChannel, ReplicateObject): checked here once for every service, so each call's key
//! obeys the same rule.

use tonic::Status;

use super::status::invalid_field;
use crate::ledger::requests::MAX_REQUEST_ID_LEN;

/// A request's idempotency key: `None` when empty, else 1–[`MAX_REQUEST_ID_LEN`] bytes.
pub(super) fn parse(bytes: &[u8]) -> Result<Option<&[u8]>, Status> {
    match bytes.len() {
        0 => Ok(None),
        n if n > MAX_REQUEST_ID_LEN => Err(invalid_field(
            "request_id",
            format!("request_id is {n} bytes, at most {MAX_REQUEST_ID_LEN}"),
        )),
        _ => Ok(Some(bytes)),
    }
}
