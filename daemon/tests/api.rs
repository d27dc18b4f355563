//! The API's conventions end to end, against real daemon processes: every failure carries
//! `google.rpc` details (a stable reason in domain `mehr.v1`, the request field of a bad
//! request, retry advice where retrying helps), a server deadline answers DEADLINE_EXCEEDED,
//! and every paged list walks its pages and refuses page tokens that are garbled or were issued
//! for another list or other filters.

mod common;

use std::time::Duration;

use common::{TestDaemon, free_port, free_udp_port};
use mehr_sdk::{
    Client,
    proto::{
        self as pb, node_service_client::NodeServiceClient,
        transport_service_client::TransportServiceClient,
    },
    storage::{ObjectId, PutOptions},
};
use tonic::Code;
use tonic_types::StatusExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The `ErrorInfo.reason` of `status`, after checking the domain.
fn reason(status: &tonic::Status) -> String {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "mehr.v1", "{status:?}");
    info.reason.clone()
}

/// The fields a status's `BadRequest` names.
fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    status
        .get_error_details()
        .retry_info()
        .and_then(|retry| retry.retry_delay)
}

/// Asserts `result` failed with `code` and `reason`, and returns the status.
fn failed<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    expected: &str,
) -> tonic::Status {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), expected, "{status:?}");
    status
}

#[test]
fn failures_carry_a_reason_the_field_and_facts() {
    let daemon = TestDaemon::start();
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();

        let status = failed(
            client
                .storage()
                .stat_object(pb::StatObjectRequest {
                    id: vec![1, 2, 3].into(),
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
        );
        assert_eq!(fields(&status), ["id"]);
        assert!(retry_delay(&status).is_none());

        // The SDK exposes the reason and its facts.
        let missing = ObjectId::from_bytes([9; 32]);
        let error = client.stat(&missing).await.unwrap_err();
        assert_eq!(error.code(), Some(Code::NotFound));
        assert_eq!(error.reason(), Some("OBJECT_NOT_FOUND"));
        assert_eq!(error.domain(), Some("mehr.v1"));
        assert_eq!(error.metadata().unwrap()["id"], missing.to_string());

        let status = failed(
            client
                .compute()
                .invoke(pb::InvokeRequest {
                    function_id: "nobody/serves-this".into(),
                    placement: pb::Placement::Local as i32,
                    ..Default::default()
                })
                .await,
            Code::NotFound,
            "FUNCTION_NOT_FOUND",
        );
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().unwrap().metadata["function_id"],
            "nobody/serves-this"
        );

        let info = client.info().await.unwrap();
        let status = failed(
            client
                .ledger()
                .set_trust(pb::SetTrustRequest {
                    node_id: info.identity_hash.clone(),
                    trusted: true,
                    credit_limit_umhr: 1,
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
        );
        assert_eq!(fields(&status), ["node_id"]);

        let status = failed(
            client
                .transport()
                .create_interface(pb::CreateInterfaceRequest {
                    spec: Some(pb::InterfaceSpec {
                        r#type: "tcp_server".into(),
                        listen_port: Some(70_000),
                        ..Default::default()
                    }),
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
        );
        assert_eq!(fields(&status), ["spec.listen_port"]);

        // Over TCP, the two token problems have their own reasons.
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", daemon.api))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut node = NodeServiceClient::new(channel);
        failed(
            node.get_info(pb::GetInfoRequest {}).await,
            Code::Unauthenticated,
            "TOKEN_MISSING",
        );
        let mut wrong = tonic::Request::new(pb::GetInfoRequest {});
        wrong
            .metadata_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        failed(
            node.get_info(wrong).await,
            Code::Unauthenticated,
            "TOKEN_INVALID",
        );
    });
}

#[test]
fn a_server_deadline_is_deadline_exceeded_and_a_full_node_says_when_to_retry() {
    let daemon = TestDaemon::start_with_config(
        "[api]\nrequest_timeout_secs = 1\nmax_concurrent_requests = 1\n",
    );
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        // An interface to send the path request on (with none, it fails at once).
        client
            .add_interface(pb::InterfaceSpec {
                r#type: "udp".into(),
                listen_ip: Some("127.0.0.1".into()),
                listen_port: Some(u32::from(free_udp_port())),
                forward_ip: Some("127.0.0.1".into()),
                forward_port: Some(u32::from(free_udp_port())),
                ..Default::default()
            })
            .await
            .unwrap();
        // A path request that waits 5 s for an answer no one sends: the 1 s server deadline
        // ends it. It holds the node's only request slot meanwhile.
        let mut transport: TransportServiceClient<_> = client.transport();
        let waiting = tokio::spawn(async move {
            transport
                .request_path(pb::RequestPathRequest {
                    destination: vec![7; 16].into(),
                    timeout_ms: 5000,
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "{:?}", waiting.await);
        let status = failed(
            client.node().get_info(pb::GetInfoRequest {}).await,
            Code::ResourceExhausted,
            "OVERLOADED",
        );
        assert!(retry_delay(&status).is_some(), "{status:?}");

        let status = failed(
            waiting.await.unwrap(),
            Code::DeadlineExceeded,
            "CALL_DEADLINE_EXCEEDED",
        );
        assert!(status.message().contains("deadline"), "{status:?}");
        // The slot is free again.
        client.info().await.unwrap();
    });
}

/// Trusts `count` made-up peers.
async fn trust_peers(client: &Client, count: u8) -> Vec<Vec<u8>> {
    let mut peers = Vec::new();
    for i in 0..count {
        let peer = vec![0xA0 + i; 16];
        client.trust(&peer, 10).await.unwrap();
        peers.push(peer);
    }
    peers
}

/// Walks a list with pages of `size` through `fetch(page_token) -> (keys, next_page_token)`;
/// returns every key and the number of pages.
async fn walk<F, Fut>(mut fetch: F) -> (Vec<Vec<u8>>, usize)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = (Vec<Vec<u8>>, String)>,
{
    let mut keys = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (page, next) = fetch(token).await;
        keys.extend(page);
        pages += 1;
        if next.is_empty() {
            return (keys, pages);
        }
        token = next;
    }
}

#[test]
fn every_list_pages_and_binds_its_tokens() {
    let daemon = TestDaemon::start();
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();

        // ListTrusted: five peers in pages of two, by node id.
        let peers = trust_peers(&client, 5).await;
        let (keys, pages) = walk(|page_token| {
            let client = client.clone();
            async move {
                let page = client
                    .trusted_peers_page(pb::ListTrustedRequest {
                        page_size: 2,
                        page_token,
                    })
                    .await
                    .unwrap();
                let keys = page.peers.iter().map(|p| p.node_id.to_vec()).collect();
                (keys, page.next_page_token)
            }
        })
        .await;
        assert_eq!((keys, pages), (peers.clone(), 3));
        assert_eq!(client.trusted_peers().await.unwrap().len(), 5);
        let trusted_token = client
            .trusted_peers_page(pb::ListTrustedRequest {
                page_size: 2,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .next_page_token;

        // ListObjects: three objects, by creation and by id; the token is bound to both.
        let mut ids = Vec::new();
        for i in 0..3u8 {
            let stored = client
                .put_bytes(vec![i; 10 + usize::from(i)], PutOptions::default())
                .await
                .unwrap();
            ids.push(stored.object.id.as_bytes().to_vec());
            // Objects stored in the same millisecond list by id; these list by creation.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let list_objects = |order: pb::ListOrder, scope: pb::ListScope, page_token: String| {
            let client = client.clone();
            async move {
                client
                    .storage()
                    .list_objects(pb::ListObjectsRequest {
                        page_size: 2,
                        page_token,
                        order: order as i32,
                        scope: scope as i32,
                    })
                    .await
            }
        };
        let (created, pages) = walk(|token| {
            let list = list_objects(pb::ListOrder::Created, pb::ListScope::Local, token);
            async move {
                let page = list.await.unwrap().into_inner();
                let keys = page.objects.iter().map(|o| o.id.to_vec()).collect();
                (keys, page.next_page_token)
            }
        })
        .await;
        assert_eq!((created, pages), (ids.clone(), 2));
        let (by_id, _) = walk(|token| {
            let list = list_objects(pb::ListOrder::Id, pb::ListScope::Local, token);
            async move {
                let page = list.await.unwrap().into_inner();
                let keys = page.objects.iter().map(|o| o.id.to_vec()).collect();
                (keys, page.next_page_token)
            }
        })
        .await;
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(by_id, sorted);
        let objects_token =
            list_objects(pb::ListOrder::Created, pb::ListScope::Local, String::new())
                .await
                .unwrap()
                .into_inner()
                .next_page_token;
        // The default order is CREATED: the same listing, so the same token works.
        list_objects(
            pb::ListOrder::Unspecified,
            pb::ListScope::Unspecified,
            objects_token.clone(),
        )
        .await
        .unwrap();
        for (order, scope) in [
            (pb::ListOrder::Id, pb::ListScope::Local),
            (pb::ListOrder::Unspecified, pb::ListScope::Placed),
        ] {
            let status = failed(
                list_objects(order, scope, objects_token.clone()).await,
                Code::InvalidArgument,
                "PAGE_TOKEN_MISMATCH",
            );
            assert_eq!(fields(&status), ["page_token"]);
        }

        // ListFunctions: the fixture module's functions one per page.
        client
            .deploy_module(
                mehr_compute::wat_to_wasm(include_str!("wasm/fixture.wat")).unwrap(),
                Some("fx"),
            )
            .await
            .unwrap();
        let every = client.list_functions().await.unwrap();
        assert!(every.len() >= 2, "{every:?}");
        let (functions, pages) = walk(|page_token| {
            let mut compute = client.compute();
            async move {
                let page = compute
                    .list_functions(pb::ListFunctionsRequest {
                        page_size: 1,
                        page_token,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let keys = page
                    .functions
                    .iter()
                    .map(|f| f.function_id.clone().into_bytes())
                    .collect();
                (keys, page.next_page_token)
            }
        })
        .await;
        assert_eq!(pages, every.len());
        let expected: Vec<Vec<u8>> = every
            .iter()
            .map(|f| f.function_id.clone().into_bytes())
            .collect();
        assert_eq!(functions, expected);

        // ListInterfaces: three listeners added, one per page.
        for _ in 0..3 {
            client
                .add_interface(pb::InterfaceSpec {
                    r#type: "tcp_server".into(),
                    listen_ip: Some("127.0.0.1".into()),
                    listen_port: Some(u32::from(free_port())),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let (interfaces, pages) = walk(|page_token| {
            let mut transport = client.transport();
            async move {
                let page = transport
                    .list_interfaces(pb::ListInterfacesRequest {
                        page_size: 1,
                        page_token,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let keys = page
                    .interfaces
                    .iter()
                    .map(|i| i.id.to_be_bytes().to_vec())
                    .collect();
                (keys, page.next_page_token)
            }
        })
        .await;
        assert!(pages >= 3, "{interfaces:?}");
        assert_eq!(pages, client.interfaces().await.unwrap().len());
        assert!(interfaces.windows(2).all(|w| w[0] < w[1]), "{interfaces:?}");

        // Every list refuses a garbled token, and a token of another list.
        let garbage = "not-a-token!".to_string();
        for token in [garbage, trusted_token.clone()] {
            let expected = if token == trusted_token {
                "PAGE_TOKEN_MISMATCH"
            } else {
                "PAGE_TOKEN_INVALID"
            };
            let check = |result: Result<(), tonic::Status>, list: &str| {
                let status = result.expect_err(list);
                assert_eq!(status.code(), Code::InvalidArgument, "{list}: {status:?}");
                assert_eq!(reason(&status), expected, "{list}: {status:?}");
                assert_eq!(fields(&status), ["page_token"], "{list}");
            };
            let page_token = token.clone();
            check(
                client
                    .storage()
                    .list_objects(pb::ListObjectsRequest {
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListObjects",
            );
            check(
                client
                    .compute()
                    .list_functions(pb::ListFunctionsRequest {
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListFunctions",
            );
            check(
                client
                    .ledger()
                    .list_channels(pb::ListChannelsRequest {
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListChannels",
            );
            check(
                client
                    .transport()
                    .list_interfaces(pb::ListInterfacesRequest {
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListInterfaces",
            );
            check(
                client
                    .transport()
                    .list_paths(pb::ListPathsRequest {
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListPaths",
            );
            check(
                client
                    .transport()
                    .list_neighbours(pb::ListNeighboursRequest {
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListNeighbours",
            );
            check(
                client
                    .market()
                    .list_agreements(pb::ListAgreementsRequest {
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListAgreements",
            );
            check(
                client
                    .market()
                    .list_reputation(pb::ListReputationRequest {
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListReputation",
            );
            check(
                client
                    .market()
                    .discover(pb::DiscoverRequest {
                        kind: pb::CapabilityKind::Storage as i32,
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "Discover",
            );
        }
        // A garbled token on the list that issued the good one.
        failed(
            client
                .ledger()
                .list_trusted(pb::ListTrustedRequest {
                    page_size: 2,
                    page_token: "AQ".into(),
                })
                .await,
            Code::InvalidArgument,
            "PAGE_TOKEN_INVALID",
        );
    });
}
