//! The zone of a failoverd configuration served through hickory-server's own UDP path (a task
//! per query, responses through its bounded channel to the socket task), every node up. Only for
//! `bench/hickory-collapse.sh`, which compares it with failoverd's UDP path under dnsperf.
//!
//!   cargo run --release --example hickory_udp -- CONFIG LISTEN_ADDR [multi|current]
//!
//! `multi` (default): tokio's multi-thread runtime, as failoverd runs; `current`: one thread.
//!
//! Every second it prints `queries N send_failures M` to stderr: a send failure is a response
//! hickory could not hand to its socket task, which then never reaches the client.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use failoverd::decide::{Decision, Reason};
use failoverd::dns::{Answers, QueryHandler, zone};
use hickory_proto::op::ResponseCode;
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

/// Counts queries, and responses that could not be sent (our handler turns a failed send into a
/// SERVFAIL `ResponseInfo`; a ready zone answers no SERVFAIL of its own).
struct Counting {
    inner: QueryHandler<Answers>,
    queries: AtomicU64,
    send_failures: AtomicU64,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let info = self
            .inner
            .handle_request::<R, T>(request, response_handle)
            .await;
        if info.response_code == ResponseCode::ServFail {
            self.send_failures.fetch_add(1, Ordering::Relaxed);
        }
        info
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (config, listen, flavor) = match &args[..] {
        [_, config, listen] => (config, listen, "multi"),
        [_, config, listen, flavor] => (config, listen, flavor.as_str()),
        _ => {
            eprintln!("usage: hickory_udp CONFIG LISTEN_ADDR [multi|current]");
            std::process::exit(2);
        }
    };
    let runtime = match flavor {
        "multi" => tokio::runtime::Builder::new_multi_thread(),
        "current" => tokio::runtime::Builder::new_current_thread(),
        other => {
            eprintln!("unknown runtime `{other}`: multi or current");
            std::process::exit(2);
        }
    }
    .enable_all()
    .build()
    .expect("tokio runtime");
    runtime.block_on(serve(config, listen));
}

async fn serve(config: &str, listen: &str) {
    let config = failoverd::config::load(Path::new(config)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    // Every hostname answers its first node.
    let decisions: Vec<Decision> = config
        .hostnames
        .iter()
        .map(|_| Decision {
            nodes: vec![0],
            reason: Reason::Healthy,
        })
        .collect();
    let zone = Arc::new(ArcSwap::from_pointee(Answers::new(zone::build(
        &config, &decisions, 1,
    ))));
    let handler = Arc::new(Counting {
        inner: QueryHandler::new(zone),
        queries: AtomicU64::new(0),
        send_failures: AtomicU64::new(0),
    });
    let mut server = Server::new(SharedHandler(handler.clone()));
    server.register_socket(tokio::net::UdpSocket::bind(listen).await.expect("bind"));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        eprintln!(
            "queries {} send_failures {}",
            handler.queries.load(Ordering::Relaxed),
            handler.send_failures.load(Ordering::Relaxed)
        );
    }
}

/// `Server::new` takes the handler by value; the counters stay readable through the `Arc`.
struct SharedHandler(Arc<Counting>);

#[async_trait::async_trait]
impl RequestHandler for SharedHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}
