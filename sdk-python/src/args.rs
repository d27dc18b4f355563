//! Arguments from Python: payloads, ids and durations, checked with messages that name the
//! argument.

use std::time::Duration;

use prost::bytes::Bytes;
use pyo3::{
    exceptions::PyTypeError,
    prelude::*,
    pybacked::PyBackedBytes,
    types::{PyByteArray, PyBytes, PyInt, PyString},
};

use crate::failure::invalid_argument;

/// Bytes to send: `bytes` (shared, not copied), `bytearray`, `str` (as UTF-8) or anything
/// with the buffer protocol (`memoryview`, `array.array`, NumPy arrays: copied).
pub(crate) struct Payload(pub(crate) Bytes);

impl<'py> FromPyObject<'_, 'py> for Payload {
    type Error = PyErr;

    fn extract(object: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(data) = object.cast::<PyBytes>() {
            let backed = PyBackedBytes::from(data.to_owned());
            return Ok(Payload(Bytes::from_owner(backed)));
        }
        if let Ok(text) = object.cast::<PyString>() {
            return Ok(Payload(Bytes::from(text.extract::<String>()?)));
        }
        if let Ok(array) = object.cast::<PyByteArray>() {
            return Ok(Payload(Bytes::from(array.to_vec())));
        }
        // `bytes(5)` is five zero bytes: an int is a mistake, not a payload.
        if object.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err(
                "expected bytes, bytearray, str or a buffer, got int",
            ));
        }
        let py = object.py();
        let copied = py
            .import("builtins")?
            .getattr("memoryview")?
            .call1((object,))
            .and_then(|view| view.call_method0("tobytes"))
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "expected bytes, bytearray, str or a buffer, got {}",
                    object
                        .get_type()
                        .name()
                        .map_or_else(|_| "an object".to_string(), |n| n.to_string())
                ))
            })?;
        let backed = PyBackedBytes::from(copied.cast_into::<PyBytes>()?);
        Ok(Payload(Bytes::from_owner(backed)))
    }
}

/// An idempotency key: `str` (its UTF-8) or `bytes`, checked by the daemon (1–64 bytes).
pub(crate) struct RequestId(Vec<u8>);

impl RequestId {
    /// The key's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl<'py> FromPyObject<'_, 'py> for RequestId {
    type Error = PyErr;

    fn extract(object: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(data) = object.cast::<PyBytes>() {
            return Ok(RequestId(data.as_bytes().to_vec()));
        }
        if let Ok(text) = object.cast::<PyString>() {
            return Ok(RequestId(text.extract::<String>()?.into_bytes()));
        }
        Err(PyTypeError::new_err("request_id: expected str or bytes"))
    }
}

/// A fixed-length id given as hex (`str`) or raw `bytes`.
pub(crate) fn id_bytes(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
    what: &str,
    length: usize,
) -> PyResult<Vec<u8>> {
    let raw = if let Ok(text) = value.cast::<PyString>() {
        let text: String = text.extract()?;
        hex::decode(text.trim()).map_err(|e| {
            invalid_argument(
                py,
                format!(
                    "{what} `{text}` is not hex: {e} (expected {length} bytes as {} hex digits)",
                    length * 2
                ),
            )
        })?
    } else if let Ok(data) = value.cast::<PyBytes>() {
        data.as_bytes().to_vec()
    } else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a hex str or bytes"
        )));
    };
    if raw.len() != length {
        return Err(invalid_argument(
            py,
            format!(
                "{what} has {} bytes, expected {length} ({} hex digits)",
                raw.len(),
                length * 2
            ),
        ));
    }
    Ok(raw)
}

/// A duration in seconds (`float`), checked to be positive and finite.
pub(crate) fn seconds(
    py: Python<'_>,
    value: Option<f64>,
    what: &str,
) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
            Duration::try_from_secs_f64(seconds)
                .map(Some)
                .map_err(|e| invalid_argument(py, format!("{what} = {seconds}: {e}")))
        }
        Some(seconds) => Err(invalid_argument(
            py,
            format!("{what} must be a positive number of seconds, got {seconds}"),
        )),
    }
}

/// Where a call may run, from its Python spelling: `"auto"`, `"local"` or `"mesh"`.
pub(crate) fn placement(py: Python<'_>, value: &str) -> PyResult<mehr_sdk::Placement> {
    match value {
        "auto" => Ok(mehr_sdk::Placement::Auto),
        "local" => Ok(mehr_sdk::Placement::Local),
        "mesh" => Ok(mehr_sdk::Placement::Mesh),
        other => Err(invalid_argument(
            py,
            format!("placement must be \"auto\", \"local\" or \"mesh\", got {other:?}"),
        )),
    }
}

/// A route policy from its Python spelling: `None` (the path Reticulum's rules keep),
/// `"cheapest"`, `"fastest"` or `"balanced"`.
pub(crate) fn route_policy(
    py: Python<'_>,
    value: Option<&str>,
) -> PyResult<mehr_sdk::proto::RoutePolicy> {
    use mehr_sdk::proto::RoutePolicy;
    match value {
        None => Ok(RoutePolicy::Unspecified),
        Some("cheapest") => Ok(RoutePolicy::Cheapest),
        Some("fastest") => Ok(RoutePolicy::Fastest),
        Some("balanced") => Ok(RoutePolicy::Balanced),
        Some(other) => Err(invalid_argument(
            py,
            format!(
                "policy must be \"cheapest\", \"fastest\", \"balanced\" or None, got {other:?}"
            ),
        )),
    }
}

/// A verification tier from its Python spelling: `"reputation"`, `"optimistic:N"` (audit one
/// call in N) or `"redundant:K"` (K providers, majority wins).
pub(crate) fn tier(
    py: Python<'_>,
    value: Option<&str>,
) -> PyResult<Option<mehr_sdk::market::Tier>> {
    use mehr_sdk::market::Tier;
    let Some(value) = value else { return Ok(None) };
    let bad = || {
        invalid_argument(
            py,
            format!(
                "tier must be \"reputation\", \"optimistic:N\" or \"redundant:K\", got {value:?}"
            ),
        )
    };
    let (name, number) = match value.split_once(':') {
        Some((name, n)) => (name, Some(n.parse::<u32>().map_err(|_| bad())?)),
        None => (value, None),
    };
    match (name, number) {
        ("reputation", None) => Ok(Some(Tier::Reputation)),
        ("optimistic", Some(one_in)) => Ok(Some(Tier::Optimistic { one_in })),
        ("redundant", Some(k)) => Ok(Some(Tier::Redundant { k })),
        _ => Err(bad()),
    }
}

/// A capability kind as Python names it: `"storage"`, `"relay"`, `"gateway"`, `"wasm"`, …
pub(crate) fn capability_kind(
    py: Python<'_>,
    value: &str,
) -> PyResult<mehr_sdk::proto::CapabilityKind> {
    use mehr_sdk::proto::CapabilityKind;
    let name = format!(
        "CAPABILITY_KIND_{}",
        value.to_ascii_uppercase().replace('-', "_")
    );
    match CapabilityKind::from_str_name(&name) {
        Some(kind) if kind != CapabilityKind::Unspecified => Ok(kind),
        _ => Err(invalid_argument(
            py,
            format!(
                "kind must be a capability kind such as \"storage\", \"relay\" or \"wasm\", got {value:?}"
            ),
        )),
    }
}
