//! A simulated link between two nodes, carried over loopback UDP: each end shapes its
//! traffic as the configured medium would (bitrate, latency, loss, MTU, half duplex — see
//! [`super::shaper`]). Two daemons on one machine then talk as if over a 1200 bit/s LoRa hop.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use rand::Rng;
use tokio::{net::UdpSocket, time::Instant};

use super::{
    LinkState, Port,
    shaper::{Medium, Reception},
    spec::SimLink,
};

/// Moves frames over the simulated medium until stopped.
pub(super) async fn run(socket: UdpSocket, peer: SocketAddr, link: SimLink, port: Port) {
    port.stats.set_state(LinkState::Up);
    let origin = Instant::now();
    let medium = Arc::new(Mutex::new(Medium::new(
        link.bitrate,
        link.half_duplex,
        link.latency,
    )));

    let receive = async {
        let mut buf = vec![0u8; link.mtu.max(2048)];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if from != peer || n == 0 {
                continue;
            }
            let heard = lock(&medium).hear(origin.elapsed(), n);
            match heard {
                Reception::Collided => port.stats.malformed(1),
                Reception::DeliverAt(at) => {
                    let frame = buf[..n].to_vec();
                    let port = port.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(origin + at).await;
                        port.deliver(frame).await;
                    });
                }
            }
        }
    };
    let send = async {
        while let Some(frame) = port.outbound.pop().await {
            if frame.len() > link.mtu {
                port.stats.dropped(1);
                continue;
            }
            // CSMA: wait for a quiet medium, then a random backoff so that two ends that
            // heard the same frame end do not both start at once; listen again after it.
            loop {
                let now = origin.elapsed();
                let at = lock(&medium).may_send_at(now);
                if at > now {
                    tokio::time::sleep(at - now).await;
                    continue;
                }
                if !link.half_duplex {
                    break;
                }
                let slot = lock(&medium).backoff_slot();
                let backoff = slot.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
                tokio::time::sleep(backoff).await;
                let now = origin.elapsed();
                if lock(&medium).may_send_at(now) <= now {
                    break;
                }
            }
            let end = lock(&medium).start_sending(origin.elapsed(), frame.len());
            // A lost frame still occupies the air; it just never arrives.
            let lost = link.loss > 0.0 && rand::thread_rng().gen_bool(link.loss);
            if lost {
                port.stats.dropped(1);
            } else if socket.send_to(&frame, peer).await.is_ok() {
                port.stats.sent(&frame);
            }
            tokio::time::sleep_until(origin + end).await;
        }
    };
    tokio::select! {
        _ = receive => {}
        _ = send => {}
        _ = port.stop.cancelled() => {}
    }
    port.stats.set_state(LinkState::Down("stopped".into()));
}

fn lock(medium: &Mutex<Medium>) -> std::sync::MutexGuard<'_, Medium> {
    medium.lock().unwrap_or_else(|p| p.into_inner())
}
