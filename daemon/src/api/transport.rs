//! `mehr.v1.TransportService`: interfaces, paths, neighbours, announces, counters.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use mehr_proto::v1::{self as pb, transport_service_server::TransportService};
use mehr_transport::{hashes::DestinationHash, path_cost::CompactPathCost, router::DropReason};
use tonic::{Request, Response, Status};

use super::{
    paging::{Filters, PageRequest},
    status::invalid_field,
};
use crate::{
    config::interfaces::ModeName,
    transport::{
        InterfaceInfo, InterfaceSpec, InterfaceType, LinkState, PathView, Route, TransportHandle,
    },
};

/// Default wait for RequestPath.
const DEFAULT_PATH_TIMEOUT: Duration = Duration::from_secs(15);

/// The TransportService implementation.
#[derive(Clone)]
pub struct TransportApi {
    transport: TransportHandle,
    part_drops: crate::seams::drops::PartDrops,
}

impl TransportApi {
    /// Serves `transport`.
    pub fn new(transport: TransportHandle) -> Self {
        TransportApi {
            transport,
            part_drops: Default::default(),
        }
    }

    /// Reports the drops of the node's parts (ledger, market, storage) in GetStats.
    pub fn with_part_drops(mut self, part_drops: crate::seams::drops::PartDrops) -> Self {
        self.part_drops = part_drops;
        self
    }
}

/// Parses a 16-byte hash field.
pub(crate) fn destination(field: &str, bytes: &[u8]) -> Result<DestinationHash, Status> {
    DestinationHash::from_slice(bytes).ok_or_else(|| {
        invalid_field(
            field,
            format!(
                "{field} must be 16 bytes (a destination hash), not {}",
                bytes.len()
            ),
        )
    })
}

#[tonic::async_trait]
impl TransportService for TransportApi {
    async fn list_interfaces(
        &self,
        request: Request<pb::ListInterfacesRequest>,
    ) -> Result<Response<pb::ListInterfacesResponse>, Status> {
        let request = request.into_inner();
        let paging = PageRequest::parse(
            Filters::new("ListInterfaces"),
            request.page_size,
            &request.page_token,
        )?;
        let all = self.transport.interfaces().await?;
        let (interfaces, next_page_token) =
            paging.page(all, |i: &InterfaceInfo| i.id.to_be_bytes().to_vec());
        Ok(Response::new(pb::ListInterfacesResponse {
            interfaces: interfaces.into_iter().map(interface_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn create_interface(
        &self,
        request: Request<pb::CreateInterfaceRequest>,
    ) -> Result<Response<pb::CreateInterfaceResponse>, Status> {
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| invalid_field("spec", "spec is required"))?;
        let spec = spec_from_proto(spec)?;
        let interface_id = self.transport.add_interface(spec).await?;
        Ok(Response::new(pb::CreateInterfaceResponse { interface_id }))
    }

    async fn delete_interface(
        &self,
        request: Request<pb::DeleteInterfaceRequest>,
    ) -> Result<Response<pb::DeleteInterfaceResponse>, Status> {
        self.transport
            .remove_interface(request.into_inner().interface_id)
            .await?;
        Ok(Response::new(pb::DeleteInterfaceResponse {}))
    }

    async fn list_paths(
        &self,
        request: Request<pb::ListPathsRequest>,
    ) -> Result<Response<pb::ListPathsResponse>, Status> {
        let request = request.into_inner();
        let filters = Filters::new("ListPaths").field("mehr_only", [u8::from(request.mehr_only)]);
        let paging = PageRequest::parse(filters, request.page_size, &request.page_token)?;
        let mut all = self.transport.paths().await?;
        if request.mehr_only {
            all.retain(|p| p.mehr_node);
        }
        let (paths, next_page_token) = paging.page(all, |p: &PathView| p.destination.0.to_vec());
        Ok(Response::new(pb::ListPathsResponse {
            paths: paths.iter().map(path_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_neighbours(
        &self,
        request: Request<pb::ListNeighboursRequest>,
    ) -> Result<Response<pb::ListNeighboursResponse>, Status> {
        let request = request.into_inner();
        let paging = PageRequest::parse(
            Filters::new("ListNeighbours"),
            request.page_size,
            &request.page_token,
        )?;
        let all = self.transport.neighbours().await?;
        let (neighbours, next_page_token) = paging.page(all, |n| n.destination.0.to_vec());
        Ok(Response::new(pb::ListNeighboursResponse {
            neighbours: neighbours
                .into_iter()
                .map(|n| pb::Neighbour {
                    destination: n.destination.0.to_vec().into(),
                    node_id: n.node_id.0.to_vec().into(),
                    interface_id: n.interface,
                    last_heard_seconds: n.last_heard_secs,
                    cost: Some(cost_to_proto(&n.cost)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn request_path(
        &self,
        request: Request<pb::RequestPathRequest>,
    ) -> Result<Response<pb::RequestPathResponse>, Status> {
        let request = request.into_inner();
        let destination = destination("destination", &request.destination)?;
        let timeout = match request.timeout_ms {
            0 => DEFAULT_PATH_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let path = self.transport.request_path(destination, timeout).await?;
        Ok(Response::new(pb::RequestPathResponse {
            path: Some(path_to_proto(&path)),
        }))
    }

    async fn announce(
        &self,
        _: Request<pb::AnnounceRequest>,
    ) -> Result<Response<pb::AnnounceResponse>, Status> {
        let announced = self.transport.announce_now().await?;
        Ok(Response::new(pb::AnnounceResponse {
            announced: announced as u32,
        }))
    }

    async fn get_stats(
        &self,
        _: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let stats = self.transport.stats().await?;
        let counters = &stats.counters;
        Ok(Response::new(pb::GetStatsResponse {
            transport_id: stats.transport_id.0.to_vec().into(),
            mehr_destination: stats.mehr_destination.0.to_vec().into(),
            announce_app_data: stats.announce_app_data.into(),
            packets_received: counters.received,
            drops: counters
                .drops()
                .filter(|(_, count)| *count > 0)
                .map(|(reason, count)| pb::DropCount {
                    reason: drop_reason_name(reason),
                    count,
                })
                .chain(
                    stats
                        .limit_drops
                        .iter()
                        .filter(|(_, count)| *count > 0)
                        .map(|(reason, count)| pb::DropCount {
                            reason: (*reason).to_string(),
                            count: *count,
                        }),
                )
                .collect(),
            paths: stats.paths as u64,
            links: stats.links as u64,
            listener_drops: stats.subscriber_drops,
            control_rejected: stats.control_rejected,
            control_posts_dropped: stats.control_posts_dropped,
            packets_transmitted: counters.transmitted,
            packets_forwarded: counters.forwarded,
            packets_delivered: counters.delivered,
            announces_rebroadcast: counters.announces_rebroadcast,
            lost_path_requests: counters.lost_path_requests,
            part_drops: self
                .part_drops
                .snapshot()
                .into_iter()
                .map(|(reason, count)| pb::DropCount {
                    reason: reason.to_string(),
                    count,
                })
                .collect(),
        }))
    }
}

/// `InvalidAnnounce` → `invalid_announce`.
fn drop_reason_name(reason: DropReason) -> String {
    let mut name = String::new();
    for (i, c) in format!("{reason:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

pub(crate) fn cost_to_proto(cost: &CompactPathCost) -> pb::PathCost {
    pb::PathCost {
        cost_per_byte: cost.cost_per_byte(),
        worst_latency_ms: u32::from(cost.worst_latency_ms),
        bandwidth_bps: cost.bandwidth_bps(),
        hops: u32::from(cost.hops),
        mtu: cost.mtu_bytes(),
        encoded: cost.to_bytes().to_vec().into(),
    }
}

fn path_to_proto(path: &PathView) -> pb::Path {
    pb::Path {
        destination: path.destination.0.to_vec().into(),
        next_hop: path.next_hop.0.to_vec().into(),
        hops: u32::from(path.hops),
        interface_id: path.interface,
        age_seconds: path.age_secs,
        mehr_node: path.mehr_node,
        cost: path.cost.as_ref().map(cost_to_proto),
        routes: path.routes.iter().map(route_to_proto).collect(),
    }
}

pub(crate) fn route_to_proto(route: &Route) -> pb::Route {
    pb::Route {
        next_hop: route.next_hop.0.to_vec().into(),
        hops: u32::from(route.hops),
        cost: route.cost.as_ref().map(cost_to_proto),
    }
}

fn interface_to_proto(info: InterfaceInfo) -> pb::Interface {
    let (state, state_detail) = match info.state {
        LinkState::Up => (pb::InterfaceState::Up, String::new()),
        LinkState::Connecting(why) => (pb::InterfaceState::Connecting, why),
        LinkState::Down(why) => (pb::InterfaceState::Down, why),
    };
    pb::Interface {
        id: info.id,
        name: info.name,
        spec: Some(spec_to_proto(&info.spec)),
        parent_id: info.parent,
        peer: info.peer,
        state: state as i32,
        state_detail,
        bitrate: info.bitrate,
        rx_frames: info.rx_frames,
        rx_bytes: info.rx_bytes,
        tx_frames: info.tx_frames,
        tx_bytes: info.tx_bytes,
        tx_announce_bytes: info.tx_announce_bytes,
        tx_dropped: info.tx_dropped,
        rx_malformed: info.rx_malformed,
        queued_bytes: info.queued_bytes,
    }
}

fn mode_name(mode: ModeName) -> &'static str {
    match mode {
        ModeName::Full => "full",
        ModeName::PointToPoint => "point_to_point",
        ModeName::AccessPoint => "access_point",
        ModeName::Roaming => "roaming",
        ModeName::Boundary => "boundary",
        ModeName::Gateway => "gateway",
    }
}

fn spec_to_proto(spec: &InterfaceSpec) -> pb::InterfaceSpec {
    pb::InterfaceSpec {
        r#type: spec.kind.as_str().to_string(),
        name: spec.name.clone(),
        mode: Some(mode_name(spec.mode).to_string()),
        bitrate: spec.bitrate,
        announce_cap: spec.announce_cap,
        listen_ip: spec.listen_ip.map(|ip| ip.to_string()),
        listen_port: spec.listen_port.map(u32::from),
        target_host: spec.target_host.clone(),
        target_port: spec.target_port.map(u32::from),
        forward_ip: spec.forward_ip.map(|ip| ip.to_string()),
        forward_port: spec.forward_port.map(u32::from),
        port: spec.port.as_ref().map(|p| p.display().to_string()),
        speed: spec.speed,
        peer_port: spec.peer_port.map(u32::from),
        latency_ms: spec.latency_ms,
        loss: spec.loss,
        mtu: spec.mtu.map(|m| m as u32),
        half_duplex: spec.half_duplex,
    }
}

/// Checks an API interface description; every problem is INVALID_ARGUMENT naming the field
/// (as `spec.<field>` in the BadRequest).
fn spec_from_proto(spec: pb::InterfaceSpec) -> Result<InterfaceSpec, Status> {
    let invalid = |field: &str, message: String| invalid_field(&format!("spec.{field}"), message);
    let kind = InterfaceType::parse(&spec.r#type).ok_or_else(|| {
        invalid(
            "type",
            format!(
                "type `{}` is not one of tcp_server, tcp_client, udp, serial, sim",
                spec.r#type
            ),
        )
    })?;
    let port = |field: &str, value: Option<u32>| -> Result<Option<u16>, Status> {
        value
            .map(|v| {
                u16::try_from(v)
                    .map_err(|_| invalid(field, format!("{field} {v} is not a port number")))
            })
            .transpose()
    };
    let ip = |field: &str, value: Option<String>| -> Result<Option<IpAddr>, Status> {
        value
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid(field, format!("{field} `{v}` is not an IP address")))
            })
            .transpose()
    };
    let mode = match spec.mode.as_deref() {
        None | Some("") | Some("full") => ModeName::Full,
        Some("point_to_point") => ModeName::PointToPoint,
        Some("access_point") => ModeName::AccessPoint,
        Some("roaming") => ModeName::Roaming,
        Some("boundary") => ModeName::Boundary,
        Some("gateway") => ModeName::Gateway,
        Some(other) => {
            return Err(invalid(
                "mode",
                format!("mode `{other}` is not a Reticulum interface mode"),
            ));
        }
    };
    let mut out = InterfaceSpec::new(kind);
    out.name = spec.name;
    out.mode = mode;
    out.bitrate = spec.bitrate;
    out.announce_cap = spec.announce_cap;
    out.listen_ip = ip("listen_ip", spec.listen_ip)?;
    out.listen_port = port("listen_port", spec.listen_port)?;
    out.target_host = spec.target_host;
    out.target_port = port("target_port", spec.target_port)?;
    out.forward_ip = ip("forward_ip", spec.forward_ip)?;
    out.forward_port = port("forward_port", spec.forward_port)?;
    out.port = spec.port.map(PathBuf::from);
    out.speed = spec.speed;
    out.peer_port = port("peer_port", spec.peer_port)?;
    out.latency_ms = spec.latency_ms;
    out.loss = spec.loss;
    out.mtu = spec.mtu.map(|m| m as usize);
    out.half_duplex = spec.half_duplex;
    // The spec's own check names the field in its message; the BadRequest names the spec.
    out.kind()
        .map_err(|e| invalid_field("spec", e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_are_snake_case() {
        assert_eq!(
            drop_reason_name(DropReason::InvalidAnnounce),
            "invalid_announce"
        );
        assert_eq!(drop_reason_name(DropReason::Malformed), "malformed");
    }

    #[test]
    fn spec_errors_name_the_field() {
        let spec = pb::InterfaceSpec {
            r#type: "tcp_client".into(),
            target_host: Some("h".into()),
            ..Default::default()
        };
        let err = spec_from_proto(spec).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("target_port"), "{}", err.message());
        let spec = pb::InterfaceSpec {
            r#type: "tcp_server".into(),
            listen_port: Some(70000),
            ..Default::default()
        };
        assert!(
            spec_from_proto(spec)
                .unwrap_err()
                .message()
                .contains("listen_port 70000")
        );
    }
}
