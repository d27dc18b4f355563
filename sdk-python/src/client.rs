//! `Client` (blocking calls) and `AsyncClient` (awaitable calls): one connection to one
//! daemon, with the same methods. Both release the GIL while the network is waited on.

use std::{path::PathBuf, time::Duration};

use mehr_sdk::{
    ConnectOptions, InvokeOptions,
    storage::{ByteRange, ListOptions, ListOrder, ListScope, ObjectId, PutOptions},
};
use pyo3::{prelude::*, sync::PyOnceLock, types::PyTuple};
use tonic::Code;

use crate::{
    args::{Payload, RequestId, capability_kind, id_bytes, placement, route_policy, seconds, tier},
    bridge::{self, Built},
    failure::{Failure, invalid_argument},
    runtime::ProcessBound,
    serving::{FunctionArg, ServeRequest},
    streams::{OutputStream, Subscription},
};

/// How long `send` waits for a path and the proof of delivery by default (as the daemon).
const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection settings: the `MEHR_*` variables, then the arguments given.
#[allow(clippy::too_many_arguments)]
fn connect_options(
    py: Python<'_>,
    endpoint: Option<String>,
    data_dir: Option<PathBuf>,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
    tls_domain: Option<String>,
    connect_timeout: Option<f64>,
) -> PyResult<ConnectOptions> {
    let mut options = ConnectOptions::from_env();
    options.endpoint = endpoint.or(options.endpoint);
    options.data_dir = data_dir.or(options.data_dir);
    options.token = token.or(options.token);
    options.ca_cert = ca_cert.or(options.ca_cert);
    options.tls_domain = tls_domain.or(options.tls_domain);
    options.connect_timeout = seconds(py, connect_timeout, "connect_timeout")?;
    Ok(options)
}

fn parse_object_id(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<ObjectId> {
    let raw = id_bytes(py, value, "object id", 32)?;
    let mut id = [0u8; 32];
    id.copy_from_slice(&raw);
    Ok(ObjectId::from_bytes(id))
}

fn list_order(py: Python<'_>, order: &str) -> PyResult<ListOrder> {
    match order {
        "created" => Ok(ListOrder::Created),
        "id" => Ok(ListOrder::Id),
        other => Err(invalid_argument(
            py,
            format!("order must be 'created' or 'id', got '{other}'"),
        )),
    }
}

fn byte_range(offset: u64, length: Option<u64>) -> ByteRange {
    ByteRange { offset, length }
}

/// A call's options as Python passes them (see `Client.invoke`).
struct CallOptions<'a> {
    timeout: Option<f64>,
    max_fuel: Option<u64>,
    placement: &'a str,
    tier: Option<&'a str>,
    max_price: Option<u64>,
}

fn invoke_options(py: Python<'_>, call: CallOptions<'_>) -> PyResult<InvokeOptions> {
    Ok(InvokeOptions {
        deadline: seconds(py, call.timeout, "timeout")?,
        max_fuel: call.max_fuel,
        placement: placement(py, call.placement)?,
        tier: tier(py, call.tier)?,
        max_price_umhr: call.max_price,
    })
}

/// The calls both clients make, as futures that own their arguments.
mod calls {
    use std::path::PathBuf;

    use mehr_sdk::{
        Client, InvokeOptions,
        storage::{ByteRange, ListOptions, ObjectId, PutOptions},
    };
    use prost::bytes::Bytes;

    use crate::failure::Failure;

    pub(super) async fn put_file(
        client: Client,
        path: PathBuf,
        options: PutOptions,
    ) -> Result<mehr_sdk::storage::PutOutcome, Failure> {
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|source| Failure::File {
                path: path.clone(),
                source,
            })?;
        let size = file
            .metadata()
            .await
            .map_err(|source| Failure::File {
                path: path.clone(),
                source,
            })?
            .len();
        Ok(client.put(file, options.with_expected_size(size)).await?)
    }

    pub(super) async fn get_to_file(
        client: Client,
        id: ObjectId,
        range: ByteRange,
        path: PathBuf,
    ) -> Result<u64, Failure> {
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|source| Failure::File {
                path: path.clone(),
                source,
            })?;
        Ok(client.get_to(&id, range, &mut file).await?)
    }

    pub(super) async fn invoke(
        client: Client,
        function_id: String,
        input: Bytes,
        options: InvokeOptions,
    ) -> Result<mehr_sdk::proto::InvokeResponse, Failure> {
        Ok(client.invoke_with(&function_id, input, options).await?)
    }

    pub(super) async fn list(
        client: Client,
        options: ListOptions,
    ) -> Result<mehr_sdk::storage::ObjectPage, Failure> {
        Ok(client.list(options).await?)
    }
}

/// The `mehr.serving` helper that turns functions, objects and services into what `_serve`
/// takes.
fn serving_helper<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module =
        MODULE.get_or_try_init(py, || Ok::<_, PyErr>(py.import("mehr.serving")?.unbind()))?;
    module.bind(py).getattr(name)
}

/// Generates the methods `Client` and `AsyncClient` share. `$run` is `bridge::wait` (block)
/// or `bridge::spawn` (awaitable); `$ret` the matching return type.
macro_rules! client_methods {
    ($class:ident, $what:literal, $run:path, $ret:ty, { $($extra:item)* }) => {
        #[pymethods]
        impl $class {
            $($extra)*

            /// Where this client is connected (`unix:/path`, `http://host:port`, …).
            #[getter]
            fn target(&self) -> PyResult<String> {
                Ok(self.inner.get($what)?.target().to_string())
            }

            /// The node's identity, version, participation level and API endpoints.
            fn info<'py>(&self, py: Python<'py>) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                $run(py, async move { Ok::<_, Failure>(client.info().await?) })
            }

            /// The Mehr nodes one hop away.
            fn neighbours<'py>(&self, py: Python<'py>) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                $run(py, async move { Ok::<_, Failure>(client.neighbours().await?) })
            }

            /// Finds providers on the mesh, nearest ring first, ranked by price, path cost,
            /// reputation and load: of `function` when given, else of `kind` (`"storage"`,
            /// `"relay"`, `"gateway"`, `"wasm"`, …), at `max_price` μMHR per unit or less,
            /// until `want` are found.
            #[pyo3(signature = (function = None, *, kind = None, max_price = None, want = 1))]
            fn discover<'py>(
                &self,
                py: Python<'py>,
                function: Option<String>,
                kind: Option<&str>,
                max_price: Option<u64>,
                want: u32,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let mut what = match (function, kind) {
                    (Some(f), None | Some("function")) => mehr_sdk::market::Discover::function(f),
                    (None, Some(kind)) => mehr_sdk::market::Discover::kind(capability_kind(py, kind)?),
                    (None, None) => return Err(invalid_argument(py, "give a function or a kind".to_string())),
                    (Some(_), Some(kind)) => {
                        return Err(invalid_argument(py, format!("a function goes with kind \"function\", not {kind:?}")))
                    }
                };
                what = what.want(want.max(1));
                if let Some(price) = max_price {
                    what = what.max_price(price);
                }
                $run(py, async move { Ok::<_, Failure>(client.discover(what).await?.offers) })
            }

            /// This node's balance in the ledger, in channels and free to spend (μMHR).
            fn balance<'py>(&self, py: Python<'py>) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                $run(py, async move { Ok::<_, Failure>(client.balance().await?) })
            }

            /// This node's payment channels with their latest co-signed states.
            fn channels<'py>(&self, py: Python<'py>) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                $run(py, async move { Ok::<_, Failure>(client.channels().await?) })
            }

            /// Opens a payment channel with the Mehr node `peer` (16 bytes, hex or bytes; a
            /// neighbour, or any node whose announce was heard), depositing `deposit_umhr` (and
            /// asking `peer_deposit_umhr` of the peer); waits up to `timeout` seconds until both
            /// signed it. `request_id` (1–64 bytes or characters) is the call's idempotency
            /// key: call again with the same one after a failure and it converges on the same
            /// channel; without one a fresh key is used, and reused by the SDK's own retries.
            #[pyo3(signature = (peer, deposit_umhr, *, peer_deposit_umhr = 0, timeout = None, request_id = None))]
            fn open_channel<'py>(
                &self,
                py: Python<'py>,
                peer: &Bound<'py, PyAny>,
                deposit_umhr: u64,
                peer_deposit_umhr: u64,
                timeout: Option<f64>,
                request_id: Option<RequestId>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let peer = id_bytes(py, peer, "peer", 16)?;
                let timeout = seconds(py, timeout, "timeout")?.unwrap_or(DEFAULT_SEND_TIMEOUT);
                $run(py, async move {
                    Ok::<_, Failure>(match request_id {
                        Some(id) => client.open_channel_with_request_id(&peer, deposit_umhr, peer_deposit_umhr, id.as_bytes(), timeout).await?,
                        None => client.open_channel(&peer, deposit_umhr, peer_deposit_umhr, timeout).await?,
                    })
                })
            }

            /// Pays `amount_umhr` to `peer` through the open channel with it (the payee gets
            /// 98 %; 2 % is burned); waits up to `timeout` seconds until the new state is
            /// co-signed. `request_id` (1–64 bytes or characters) is the call's idempotency
            /// key: a repeated one moves nothing and answers with the first payment; without
            /// one a fresh key is used, and reused by the SDK's own retries.
            #[pyo3(signature = (peer, amount_umhr, *, timeout = None, request_id = None))]
            fn pay<'py>(
                &self,
                py: Python<'py>,
                peer: &Bound<'py, PyAny>,
                amount_umhr: u64,
                timeout: Option<f64>,
                request_id: Option<RequestId>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let peer = id_bytes(py, peer, "peer", 16)?;
                let timeout = seconds(py, timeout, "timeout")?.unwrap_or(DEFAULT_SEND_TIMEOUT);
                $run(py, async move {
                    Ok::<_, Failure>(match request_id {
                        Some(id) => client.pay_with_request_id(&peer, amount_umhr, id.as_bytes(), timeout).await?,
                        None => client.pay(&peer, amount_umhr, timeout).await?,
                    })
                })
            }

            /// Every function the node offers (WASM and served), ordered by id.
            fn functions<'py>(&self, py: Python<'py>) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                $run(py, async move { Ok::<_, Failure>(client.list_functions().await?) })
            }

            /// Calls a function and returns its whole output. `timeout` (seconds) bounds the
            /// call, waiting for a free slot included; `max_fuel` bounds a WASM call.
            /// `placement` is `"auto"` (this node when it offers the function, else the mesh),
            /// `"local"` or `"mesh"`; on the mesh, `tier` (`"reputation"`, `"optimistic:N"`,
            /// `"redundant:K"`) says how the result is verified and `max_price` (μMHR) caps
            /// what one provider may charge.
            #[pyo3(signature = (function_id, input = None, *, timeout = None, max_fuel = None, placement = "auto", tier = None, max_price = None))]
            #[allow(clippy::too_many_arguments)]
            fn invoke<'py>(
                &self,
                py: Python<'py>,
                function_id: String,
                input: Option<Payload>,
                timeout: Option<f64>,
                max_fuel: Option<u64>,
                placement: &str,
                tier: Option<&str>,
                max_price: Option<u64>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let options = invoke_options(py, CallOptions { timeout, max_fuel, placement, tier, max_price })?;
                let input = input.map(|p| p.0).unwrap_or_default();
                $run(py, calls::invoke(client, function_id, input, options))
            }

            /// Calls a function and streams its output (`bytes` chunks as produced).
            #[pyo3(signature = (function_id, input = None, *, timeout = None, max_fuel = None, placement = "auto", tier = None, max_price = None))]
            #[allow(clippy::too_many_arguments)]
            fn invoke_stream<'py>(
                &self,
                py: Python<'py>,
                function_id: String,
                input: Option<Payload>,
                timeout: Option<f64>,
                max_fuel: Option<u64>,
                placement: &str,
                tier: Option<&str>,
                max_price: Option<u64>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let options = invoke_options(py, CallOptions { timeout, max_fuel, placement, tier, max_price })?;
                let input = input.map(|p| p.0).unwrap_or_default();
                $run(py, async move {
                    let stream = client.invoke_stream(&function_id, input, options).await?;
                    let stream = OutputStream::new(stream);
                    let built = Python::attach(|py| Py::new(py, stream))
                        .map_err(|e| Failure::status(Code::Internal, e.to_string()))?;
                    Ok::<_, Failure>(Built(built.into_any()))
                })
            }

            /// Deploys a WebAssembly module; its functions are `<name>/<export>`.
            #[pyo3(signature = (wasm, *, name = None))]
            fn deploy_module<'py>(
                &self,
                py: Python<'py>,
                wasm: Payload,
                name: Option<String>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                $run(py, async move {
                    Ok::<_, Failure>(client.deploy_module(wasm.0, name.as_deref()).await?)
                })
            }

            /// Removes a module (by name or id); returns the ids of the functions removed.
            fn remove_module<'py>(&self, py: Python<'py>, module: String) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                $run(py, async move { Ok::<_, Failure>(client.remove_module(&module).await?) })
            }

            /// Listens on the app destination `name` (dotted, e.g. `chat.room`) and returns
            /// the subscription: iterate it for the messages. With `announce`, others can
            /// find the destination.
            #[pyo3(signature = (name, *, announce = false))]
            fn listen<'py>(&self, py: Python<'py>, name: String, announce: bool) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                $run(py, async move {
                    let listening = client.listen(&name, announce).await?;
                    let subscription = Subscription::new(listening);
                    let built = Python::attach(|py| Py::new(py, subscription))
                        .map_err(|e| Failure::status(Code::Internal, e.to_string()))?;
                    Ok::<_, Failure>(Built(built.into_any()))
                })
            }

            /// Sends `payload` encrypted to `destination` (16 bytes, hex or bytes) and waits up
            /// to `timeout` seconds for a path and the proof of delivery. `policy` picks the
            /// known path to leave by: `"cheapest"`, `"fastest"`, `"balanced"`, or `None` for
            /// the one Reticulum's rules keep.
            #[pyo3(signature = (destination, payload, *, timeout = None, policy = None))]
            fn send<'py>(
                &self,
                py: Python<'py>,
                destination: &Bound<'py, PyAny>,
                payload: Payload,
                timeout: Option<f64>,
                policy: Option<&str>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let destination = id_bytes(py, destination, "destination", 16)?;
                let timeout = seconds(py, timeout, "timeout")?.unwrap_or(DEFAULT_SEND_TIMEOUT);
                let policy = route_policy(py, policy)?;
                $run(py, async move {
                    let payload = payload.0.to_vec();
                    Ok::<_, Failure>(client.send_with(&destination, payload, policy, timeout).await?)
                })
            }

            /// Sends one packet back over the link a message came on (`Message.link_id`);
            /// returns the packet's hash in hex.
            fn reply<'py>(
                &self,
                py: Python<'py>,
                link_id: &Bound<'py, PyAny>,
                payload: Payload,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let link_id = id_bytes(py, link_id, "link id", 16)?;
                $run(py, async move {
                    let hash = client.reply(&link_id, payload.0.to_vec()).await?;
                    Ok::<_, Failure>(hex::encode(hash))
                })
            }

            /// Stores `data` as one object, optionally named; returns once it is durable.
            #[pyo3(signature = (data, *, name = None))]
            fn put<'py>(&self, py: Python<'py>, data: Payload, name: Option<String>) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let options = PutOptions { name, ..PutOptions::default() };
                $run(py, async move { Ok::<_, Failure>(client.put_bytes(data.0, options).await?) })
            }

            /// Stores a file's contents as one object, streaming it from disk.
            #[pyo3(signature = (path, *, name = None))]
            fn put_file<'py>(&self, py: Python<'py>, path: PathBuf, name: Option<String>) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let options = PutOptions { name, ..PutOptions::default() };
                $run(py, calls::put_file(client, path, options))
            }

            /// The bytes of object `object_id` (hex or bytes), or `length` of them from
            /// `offset`. The node checks every chunk against the id (DATA_LOSS if damaged).
            #[pyo3(signature = (object_id, *, offset = 0, length = None))]
            fn get<'py>(
                &self,
                py: Python<'py>,
                object_id: &Bound<'py, PyAny>,
                offset: u64,
                length: Option<u64>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let id = parse_object_id(py, object_id)?;
                let range = byte_range(offset, length);
                $run(py, async move {
                    let data = client.get_bytes(&id, range).await?;
                    Ok::<_, Failure>(prost::bytes::Bytes::from(data))
                })
            }

            /// Writes object `object_id` (or a range of it) to the file at `path`; returns the
            /// number of bytes written.
            #[pyo3(signature = (object_id, path, *, offset = 0, length = None))]
            fn get_to_file<'py>(
                &self,
                py: Python<'py>,
                object_id: &Bound<'py, PyAny>,
                path: PathBuf,
                offset: u64,
                length: Option<u64>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let id = parse_object_id(py, object_id)?;
                $run(py, calls::get_to_file(client, id, byte_range(offset, length), path))
            }

            /// Describes object `object_id`.
            fn stat<'py>(&self, py: Python<'py>, object_id: &Bound<'py, PyAny>) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let id = parse_object_id(py, object_id)?;
                $run(py, async move { Ok::<_, Failure>(client.stat(&id).await?) })
            }

            /// Places stored object `object_id` on providers, Reed-Solomon coded into
            /// `data_shards` + `parity_shards` (defaults: the node's `storage.data_shards` and
            /// `storage.parity_shards`), one shard per provider. `providers` (node ids, hex or
            /// bytes; extras are spares for repair) may be omitted: the marketplace finds them.
            /// `request_id` (1–64 bytes or characters) is the call's idempotency key: a retry
            /// with it answers with the placement the first call made.
            #[pyo3(signature = (object_id, providers = None, *, data_shards = None, parity_shards = None, duration = None, price_umhr = 0, request_id = None))]
            #[allow(clippy::too_many_arguments)]
            fn replicate<'py>(
                &self,
                py: Python<'py>,
                object_id: &Bound<'py, PyAny>,
                providers: Option<Vec<Bound<'py, PyAny>>>,
                data_shards: Option<u8>,
                parity_shards: Option<u8>,
                duration: Option<f64>,
                price_umhr: u64,
                request_id: Option<RequestId>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let id = parse_object_id(py, object_id)?;
                let mut ids = Vec::new();
                for provider in providers.unwrap_or_default() {
                    let raw = id_bytes(py, &provider, "provider", 16)?;
                    let mut node = [0u8; 16];
                    node.copy_from_slice(&raw);
                    ids.push(node);
                }
                let options = mehr_sdk::storage::ReplicateOptions {
                    providers: ids,
                    data_shards,
                    parity_shards,
                    duration_secs: seconds(py, duration, "duration")?.map(|d| d.as_secs().max(1)),
                    price_per_byte_day_umhr: price_umhr,
                    request_id: request_id.map(|id| id.as_bytes().to_vec()).unwrap_or_default(),
                };
                $run(py, async move { Ok::<_, Failure>(client.replicate(&id, options).await?) })
            }

            /// Challenges every shard of placed object `object_id` now; one result per shard.
            /// With `timeout` (seconds) the providers get at most that long; one still silent
            /// then is reported as not passed but not counted against its health.
            #[pyo3(signature = (object_id, *, timeout = None))]
            fn challenge<'py>(
                &self,
                py: Python<'py>,
                object_id: &Bound<'py, PyAny>,
                timeout: Option<f64>,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let id = parse_object_id(py, object_id)?;
                let wait = seconds(py, timeout, "timeout")?;
                $run(py, async move {
                    Ok::<_, Failure>(match wait {
                        Some(wait) => client.challenge_within(&id, wait).await?,
                        None => client.challenge(&id).await?,
                    })
                })
            }

            /// One page of the stored objects, oldest first (`order='created'`) or by id; with
            /// `placed=True`, of the objects placed on providers (always by id).
            #[pyo3(signature = (*, page_size = 0, page_token = None, order = "created", placed = false))]
            fn list_objects<'py>(
                &self,
                py: Python<'py>,
                page_size: u32,
                page_token: Option<String>,
                order: &str,
                placed: bool,
            ) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let options = ListOptions {
                    scope: if placed { ListScope::Placed } else { ListScope::Local },
                    page_size,
                    page_token: page_token.unwrap_or_default(),
                    order: list_order(py, order)?,
                };
                $run(py, calls::list(client, options))
            }

            /// Removes object `object_id`; returns what it was.
            fn delete<'py>(&self, py: Python<'py>, object_id: &Bound<'py, PyAny>) -> PyResult<$ret> {
                let client = self.inner.get($what)?.clone();
                let id = parse_object_id(py, object_id)?;
                $run(py, async move { Ok::<_, Failure>(client.delete(&id).await?) })
            }

            fn __repr__(&self) -> PyResult<String> {
                Ok(format!("{}(target='{}')", $what, self.inner.get($what)?.target()))
            }
        }
    };
}

/// A connection to a Mehr daemon whose calls block (with the GIL released). Safe to share
/// between threads; calls from several threads run concurrently on one connection.
#[pyclass(frozen, module = "mehr")]
pub(crate) struct Client {
    pub(crate) inner: ProcessBound<mehr_sdk::Client>,
}

/// A connection to a Mehr daemon whose calls are awaitables of the running asyncio loop.
#[pyclass(frozen, module = "mehr")]
pub(crate) struct AsyncClient {
    pub(crate) inner: ProcessBound<mehr_sdk::Client>,
}

client_methods!(Client, "Client", bridge::wait, Py<PyAny>, {
    /// Connects to a daemon. With no arguments: `MEHR_ENDPOINT`/`MEHR_DATA_DIR`/`MEHR_TOKEN`
    /// where set, else the local daemon's Unix socket in the default data dir.
    #[staticmethod]
    #[pyo3(signature = (endpoint = None, *, data_dir = None, token = None, ca_cert = None, tls_domain = None, connect_timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        endpoint: Option<String>,
        data_dir: Option<PathBuf>,
        token: Option<String>,
        ca_cert: Option<PathBuf>,
        tls_domain: Option<String>,
        connect_timeout: Option<f64>,
    ) -> PyResult<Client> {
        let options = connect_options(
            py,
            endpoint,
            data_dir,
            token,
            ca_cert,
            tls_domain,
            connect_timeout,
        )?;
        let outcome = bridge::wait_raw(py, async move {
            Ok::<_, Failure>(mehr_sdk::Client::connect_with(options).await?)
        })?;
        let client = outcome.map_err(|failure| failure.into_pyerr(py))?;
        Ok(Client {
            inner: ProcessBound::new(client),
        })
    }

    /// Serves functions from this process (see `mehr.Service`); returns the running
    /// `Serving`. Items are functions marked with `@mehr.function`, objects whose methods
    /// are, or `mehr.Service`s.
    #[pyo3(signature = (*items, reconnect = true))]
    fn serve(
        slf: &Bound<'_, Self>,
        items: &Bound<'_, PyTuple>,
        reconnect: bool,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let service = serving_helper(py, "Service")?.call1(items)?;
        Ok(service.call_method1("serve", (slf, reconnect))?.unbind())
    }

    /// Starts serving (used by `mehr.Service.serve`): blocks until the daemon accepted the
    /// functions.
    #[pyo3(signature = (functions, dispatcher, event_loop, reconnect, on_finish))]
    fn _serve(
        &self,
        py: Python<'_>,
        functions: Vec<FunctionArg>,
        dispatcher: Py<PyAny>,
        event_loop: Option<Py<PyAny>>,
        reconnect: bool,
        on_finish: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.inner.get("Client")?.clone();
        let request = ServeRequest::new(functions, dispatcher, event_loop, reconnect, on_finish);
        bridge::wait(py, request.start(client))
    }
});

client_methods!(
    AsyncClient,
    "AsyncClient",
    bridge::spawn,
    Bound<'py, PyAny>,
    {
        /// Connects to a daemon (see `Client.connect`); an awaitable of the `AsyncClient`.
        #[staticmethod]
        #[pyo3(signature = (endpoint = None, *, data_dir = None, token = None, ca_cert = None, tls_domain = None, connect_timeout = None))]
        #[allow(clippy::too_many_arguments)]
        fn connect<'py>(
            py: Python<'py>,
            endpoint: Option<String>,
            data_dir: Option<PathBuf>,
            token: Option<String>,
            ca_cert: Option<PathBuf>,
            tls_domain: Option<String>,
            connect_timeout: Option<f64>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let options = connect_options(
                py,
                endpoint,
                data_dir,
                token,
                ca_cert,
                tls_domain,
                connect_timeout,
            )?;
            bridge::spawn(py, async move {
                let client = mehr_sdk::Client::connect_with(options).await?;
                let built = Python::attach(|py| {
                    Py::new(
                        py,
                        AsyncClient {
                            inner: ProcessBound::new(client),
                        },
                    )
                })
                .map_err(|e| Failure::status(Code::Internal, e.to_string()))?;
                Ok::<_, Failure>(Built(built.into_any()))
            })
        }

        /// Serves functions from this process on the running event loop; an awaitable of the
        /// running `Serving` (see `Client.serve`).
        #[pyo3(signature = (*items, reconnect = true))]
        fn serve<'py>(
            slf: &Bound<'py, Self>,
            items: &Bound<'py, PyTuple>,
            reconnect: bool,
        ) -> PyResult<Bound<'py, PyAny>> {
            let py = slf.py();
            let service = serving_helper(py, "Service")?.call1(items)?;
            service.call_method1("serve_async", (slf, reconnect))
        }

        /// Starts serving (used by `mehr.Service.serve_async`): an awaitable of the `Serving`.
        #[pyo3(signature = (functions, dispatcher, event_loop, reconnect, on_finish))]
        fn _serve<'py>(
            &self,
            py: Python<'py>,
            functions: Vec<FunctionArg>,
            dispatcher: Py<PyAny>,
            event_loop: Option<Py<PyAny>>,
            reconnect: bool,
            on_finish: Option<Py<PyAny>>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let client = self.inner.get("AsyncClient")?.clone();
            let request =
                ServeRequest::new(functions, dispatcher, event_loop, reconnect, on_finish);
            bridge::spawn(py, request.start(client))
        }
    }
);

/// Registers the client classes on the module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Client>()?;
    module.add_class::<AsyncClient>()?;
    Ok(())
}
