//! Tests for the rate-limit service (`tollgate_harness::ratelimit`): the wire
//! contract Tollgate's filter speaks, through real h2c gRPC (envoy-types'
//! tonic client) against a real `redis-server` started per test.
//!
//! Job: admissions hold and refuse all or nothing, settlements charge the
//! actual amount and release the hold, counters are per subject per window,
//! malformed requests are INVALID_ARGUMENT, and a dead or hung Redis is
//! UNAVAILABLE within the timeout, with recovery once Redis is back.
//!
//! Invariants: every test has its own Redis and service on free loopback
//! ports; nothing sleeps to synchronise (recovery is polled with a deadline).
//! Needs `redis-server` (`make redis`).

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use tollgate_harness::ratelimit::{RateLimitConfig, RateLimitServer, RedisServer};
use tonic::transport::Channel;

const DAY: RateLimitUnit = RateLimitUnit::Day;

/// A descriptor of budget `budget` for `subject` in `window`, with `max` per
/// `unit` and `amount`; `reservation` makes it a settlement.
#[derive(Clone)]
struct D {
    budget: &'static str,
    subject: &'static str,
    window: &'static str,
    max: u32,
    unit: RateLimitUnit,
    amount: u64,
    reservation: Option<String>,
}

fn d(budget: &'static str, max: u32, amount: u64) -> D {
    D {
        budget,
        subject: "ab12",
        window: "d20261130",
        max,
        unit: DAY,
        amount,
        reservation: None,
    }
}

impl D {
    fn subject(mut self, s: &'static str) -> Self {
        self.subject = s;
        self
    }
    fn window(mut self, w: &'static str) -> Self {
        self.window = w;
        self
    }
    fn unit(mut self, u: RateLimitUnit) -> Self {
        self.unit = u;
        self
    }
    fn settle(mut self, reservation: &str, actual: u64) -> Self {
        self.reservation = Some(reservation.to_string());
        self.amount = actual;
        self
    }
    fn proto(&self) -> RateLimitDescriptor {
        let mut entries = vec![
            entry("tollgate_budget", self.budget),
            entry("subject", self.subject),
            entry("window", self.window),
        ];
        if let Some(r) = &self.reservation {
            entries.push(entry("reservation", r));
        }
        RateLimitDescriptor {
            entries,
            limit: Some(RateLimitOverride {
                requests_per_unit: self.max,
                unit: self.unit as i32,
            }),
            hits_addend: Some(UInt64Value { value: self.amount }),
            is_negative_hits: false,
        }
    }
}

fn entry(key: &str, value: &str) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
    }
}

struct Stack {
    redis: RedisServer,
    server: RateLimitServer,
    client: RateLimitServiceClient<Channel>,
}

async fn stack_with(timeout: Duration) -> Stack {
    let redis = RedisServer::start().expect("redis-server (run `make redis`)");
    let server = serve(&redis.url(), timeout).await;
    let client = client(&server).await;
    Stack {
        redis,
        server,
        client,
    }
}

async fn stack() -> Stack {
    stack_with(Duration::from_millis(500)).await
}

async fn serve(redis_url: &str, timeout: Duration) -> RateLimitServer {
    RateLimitServer::start(
        "127.0.0.1:0".parse().unwrap(),
        RateLimitConfig {
            redis_url: redis_url.to_string(),
            hold_ttl: Duration::from_secs(60),
            timeout,
        },
    )
    .await
    .unwrap()
}

async fn client(server: &RateLimitServer) -> RateLimitServiceClient<Channel> {
    RateLimitServiceClient::connect(server.url()).await.unwrap()
}

impl Stack {
    async fn call(&mut self, ds: &[D]) -> Result<RateLimitResponse, tonic::Status> {
        call(&mut self.client, ds).await
    }

    /// An admission that must be answered (OK or OVER_LIMIT).
    async fn admit(&mut self, ds: &[D]) -> Admission {
        Admission(self.call(ds).await.expect("an answer"))
    }

    /// Admits `ds`, which must fit; returns the reservation ids.
    async fn admit_ok(&mut self, ds: &[D]) -> Vec<String> {
        let a = self.admit(ds).await;
        assert_eq!(a.code(), Code::Ok, "{:?}", a.0);
        a.reservations()
    }

    async fn settle_ok(&mut self, ds: &[D]) {
        let r = self.call(ds).await.expect("an answer");
        assert_eq!(r.overall_code, Code::Ok as i32, "{r:?}");
        assert!(r.response_headers_to_add.is_empty(), "{r:?}");
    }
}

async fn call(
    client: &mut RateLimitServiceClient<Channel>,
    ds: &[D],
) -> Result<RateLimitResponse, tonic::Status> {
    client
        .should_rate_limit(RateLimitRequest {
            domain: "tollgate".into(),
            descriptors: ds.iter().map(D::proto).collect(),
            hits_addend: 0,
        })
        .await
        .map(tonic::Response::into_inner)
}

struct Admission(RateLimitResponse);

impl Admission {
    fn code(&self) -> Code {
        Code::try_from(self.0.overall_code).unwrap()
    }
    fn codes(&self) -> Vec<Code> {
        self.0
            .statuses
            .iter()
            .map(|s| Code::try_from(s.code).unwrap())
            .collect()
    }
    fn reservations(&self) -> Vec<String> {
        self.0
            .response_headers_to_add
            .iter()
            .map(|h| {
                assert_eq!(h.key, "x-tollgate-reservation");
                h.value.clone()
            })
            .collect()
    }
}

#[tokio::test]
async fn admissions_within_the_limit_get_reservations_and_beyond_it_are_refused_uncharged() {
    let mut s = stack().await;
    let a = s.admit(&[d("requests", 3, 1)]).await;
    assert_eq!(a.code(), Code::Ok);
    assert_eq!(a.codes(), [Code::Ok]);
    let status = &a.0.statuses[0];
    assert_eq!(status.limit_remaining, 2);
    let limit = status.current_limit.as_ref().unwrap();
    assert_eq!(
        (limit.name.as_str(), limit.requests_per_unit),
        ("requests", 3)
    );
    let ids = a.reservations();
    assert_eq!(ids.len(), 1);
    assert!(!ids[0].is_empty());

    let ids2 = s.admit_ok(&[d("requests", 3, 2)]).await;
    assert_ne!(ids, ids2, "every admission has its own reservation");

    // 3 of 3 are held: one more is refused, with the reset time.
    for _ in 0..3 {
        let refused = s.admit(&[d("requests", 3, 1)]).await;
        assert_eq!(refused.code(), Code::OverLimit);
        assert_eq!(refused.codes(), [Code::OverLimit]);
        assert!(refused.reservations().is_empty());
        let reset = refused.0.statuses[0].duration_until_reset.unwrap();
        assert!((1..=86_400).contains(&reset.seconds), "{reset:?}");
    }
    // The refusals charged nothing: settling the two holds at their amounts
    // leaves the counter at exactly 3.
    s.settle_ok(&[d("requests", 3, 1).settle(&ids[0], 1)]).await;
    s.settle_ok(&[d("requests", 3, 2).settle(&ids2[0], 2)])
        .await;
    assert_eq!(
        s.admit(&[d("requests", 3, 1)]).await.code(),
        Code::OverLimit
    );
    let other_budget = s.admit(&[d("requests-b", 3, 3)]).await;
    assert_eq!(other_budget.code(), Code::Ok);
}

#[tokio::test]
async fn a_settlement_charges_the_actual_amount_and_releases_the_hold() {
    let mut s = stack().await;
    let id = s.admit_ok(&[d("tokens", 100, 100)]).await.remove(0);
    s.settle_ok(&[d("tokens", 100, 0).settle(&id, 30)]).await;
    assert_eq!(
        s.admit(&[d("tokens", 100, 71)]).await.code(),
        Code::OverLimit
    );
    let id70 = s.admit_ok(&[d("tokens", 100, 70)]).await.remove(0);
    assert_eq!(
        s.admit(&[d("tokens", 100, 1)]).await.code(),
        Code::OverLimit
    );

    // An actual amount above the hold is charged in full (here 70 held, 90
    // charged: 120 of 100), and a second settlement of the same id charges
    // again (settlements are not idempotent).
    s.settle_ok(&[d("tokens", 100, 0).settle(&id70, 90)]).await;
    let refused = s.admit(&[d("tokens", 100, 1)]).await;
    assert_eq!(refused.code(), Code::OverLimit);
    assert_eq!(refused.0.statuses[0].limit_remaining, 0);

    // An empty reservation id (admission held nothing) still charges.
    let mut s2 = stack().await;
    s2.settle_ok(&[d("tokens", 100, 0).settle("", 60)]).await;
    assert_eq!(
        s2.admit(&[d("tokens", 100, 41)]).await.code(),
        Code::OverLimit
    );
    s2.admit_ok(&[d("tokens", 100, 40)]).await;
}

#[tokio::test]
async fn holds_count_until_settled() {
    let mut s = stack().await;
    let first = s.admit_ok(&[d("tokens", 100, 60)]).await.remove(0);
    let second = s.admit(&[d("tokens", 100, 60)]).await;
    assert_eq!(second.code(), Code::OverLimit, "the first hold counts");
    assert_eq!(second.0.statuses[0].limit_remaining, 40);
    s.settle_ok(&[d("tokens", 100, 0).settle(&first, 10)]).await;
    s.admit_ok(&[d("tokens", 100, 60)]).await;
}

#[tokio::test]
async fn a_refusal_releases_the_holds_taken_for_earlier_descriptors() {
    let mut s = stack().await;
    let refused = s
        .admit(&[
            d("shared", 100, 50).subject("shared"),
            d("per-workload", 10, 20),
            d("third", 10, 1),
        ])
        .await;
    assert_eq!(refused.code(), Code::OverLimit);
    assert_eq!(
        refused.codes(),
        [Code::Ok, Code::OverLimit, Code::Unknown],
        "the first fitted, the second refused, the third was not tried"
    );
    assert!(refused.reservations().is_empty());
    assert_eq!(refused.0.statuses[0].limit_remaining, 100);
    // The 50 held on `shared` was given back: all 100 fit.
    let ids = s
        .admit_ok(&[
            d("shared", 100, 100).subject("shared"),
            d("per-workload", 10, 10),
        ])
        .await;
    assert_eq!(ids.len(), 2, "one reservation per descriptor, in order");
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn counters_are_per_subject_and_per_window_and_per_unit() {
    let mut s = stack().await;
    s.admit_ok(&[d("tokens", 10, 10)]).await;
    assert_eq!(s.admit(&[d("tokens", 10, 1)]).await.code(), Code::OverLimit);
    s.admit_ok(&[d("tokens", 10, 10).subject("cd34")]).await;
    s.admit_ok(&[d("tokens", 10, 10).window("d20261201")]).await;
    assert_eq!(
        s.admit(&[d("tokens", 10, 1).window("d20261201")])
            .await
            .code(),
        Code::OverLimit
    );
    // A unit change is a new limit with its own counters.
    s.admit_ok(&[d("tokens", 10, 10).unit(RateLimitUnit::Hour)])
        .await;
    s.admit_ok(&[d("tokens", 10, 10).unit(RateLimitUnit::Minute)])
        .await;
    s.admit_ok(&[d("tokens", 10, 10).unit(RateLimitUnit::Month)])
        .await;
}

#[tokio::test]
async fn a_changed_max_replaces_the_limit_and_keeps_the_spend() {
    let mut s = stack().await;
    let id = s.admit_ok(&[d("tokens", 10, 8)]).await.remove(0);
    s.settle_ok(&[d("tokens", 10, 0).settle(&id, 8)]).await;
    // Raised to 20: 8 are spent, 12 are left.
    assert_eq!(
        s.admit(&[d("tokens", 20, 13)]).await.code(),
        Code::OverLimit
    );
    s.admit_ok(&[d("tokens", 20, 12)]).await;
    // Lowered to 15: already over.
    assert_eq!(s.admit(&[d("tokens", 15, 1)]).await.code(), Code::OverLimit);
}

#[tokio::test]
async fn concurrent_admissions_never_overshoot() {
    let mut s = stack_with(Duration::from_secs(5)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let mut c = s.client.clone();
        tasks.spawn(async move { call(&mut c, &[d("tokens", 500, 10)]).await });
    }
    let (mut ok, mut over) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match Code::try_from(r.unwrap().unwrap().overall_code).unwrap() {
            Code::Ok => ok += 1,
            Code::OverLimit => over += 1,
            Code::Unknown => panic!("UNKNOWN overall code"),
        }
    }
    assert_eq!((ok, over), (50, 150));
    assert_eq!(
        s.admit(&[d("tokens", 500, 1)]).await.code(),
        Code::OverLimit
    );
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument() {
    let mut s = stack().await;
    let good = d("tokens", 10, 1);
    let mut no_limit = good.proto();
    no_limit.limit = None;
    let mut seconds = good.proto();
    seconds.limit.as_mut().unwrap().unit = RateLimitUnit::Second as i32;
    let mut negative = good.proto();
    negative.is_negative_hits = true;
    let mut swapped = good.proto();
    swapped.entries.swap(0, 1);
    let mixed = d("tokens", 10, 1).settle("r", 1).proto();
    let cases = [
        (
            vec![good.proto(), no_limit],
            "descriptors[1]: no limit override",
        ),
        (vec![seconds], "unit 1 is not MINUTE"),
        (vec![negative], "is_negative_hits is not supported"),
        (vec![swapped], "entry 1 must be \"tollgate_budget\""),
        (vec![good.proto(), mixed], "cannot share a request"),
        (vec![], "no descriptors"),
    ];
    for (descriptors, message) in cases {
        let err = s
            .client
            .should_rate_limit(RateLimitRequest {
                domain: "tollgate".into(),
                descriptors,
                hits_addend: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(message), "{message:?} in {err:?}");
    }
    let err = s
        .client
        .should_rate_limit(RateLimitRequest {
            domain: String::new(),
            descriptors: vec![good.proto()],
            hits_addend: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // Nothing was counted by the refused requests.
    s.admit_ok(&[d("tokens", 10, 10)]).await;
}

/// Polls admissions of 1 until one is OK; returns how long that took.
async fn until_ok(s: &mut Stack, budget: &'static str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match s.call(&[d(budget, 1_000, 1)]).await {
            Ok(r) if r.overall_code == Code::Ok as i32 => return start.elapsed(),
            Ok(r) => panic!("unexpected answer {r:?}"),
            Err(e) => assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}"),
        }
        assert!(start.elapsed() < within, "not back within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_killed_redis_is_unavailable_within_the_timeout_and_recovers_on_restart() {
    let timeout = Duration::from_millis(200);
    let mut s = stack_with(timeout).await;
    s.admit_ok(&[d("tokens", 1_000, 1)]).await;

    s.redis.kill();
    for _ in 0..3 {
        let start = Instant::now();
        let err = s.call(&[d("tokens", 1_000, 1)]).await.unwrap_err();
        let took = start.elapsed();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(took < timeout + Duration::from_millis(300), "took {took:?}");
    }

    s.redis.restart().unwrap();
    let took = until_ok(&mut s, "tokens", Duration::from_secs(5)).await;
    eprintln!("back {took:?} after the restart");
    // Redis restarted empty: the scripts are reloaded on demand and the
    // counters start again.
    s.admit_ok(&[d("tokens", 1_000, 998)]).await;
}

#[tokio::test]
async fn a_hung_redis_is_unavailable_at_the_timeout() {
    let timeout = Duration::from_millis(200);
    let mut s = stack_with(timeout).await;
    s.admit_ok(&[d("tokens", 1_000, 1)]).await;
    let pid = s.redis.pid().unwrap() as libc::pid_t;
    // SAFETY: signals to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let start = Instant::now();
    let err = s.call(&[d("tokens", 1_000, 1)]).await.unwrap_err();
    let took = start.elapsed();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("within 200 ms"), "{err:?}");
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(300),
        "took {took:?}"
    );
    until_ok(&mut s, "tokens", Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_service_started_before_redis_serves_once_redis_is_up() {
    let addr = tollgate_harness::envoy::free_port("127.0.0.1".parse().unwrap()).unwrap();
    let server = serve(&format!("redis://{addr}"), Duration::from_millis(200)).await;
    let client = client(&server).await;
    let mut s = Stack {
        redis: RedisServer::start().unwrap(),
        server,
        client,
    };
    let err = s.call(&[d("tokens", 10, 1)]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    s.redis = RedisServer::start_on(addr).unwrap();
    until_ok(&mut s, "tokens", Duration::from_secs(5)).await;
    s.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_redis_url_is_refused_at_start() {
    let err = RateLimitServer::start(
        "127.0.0.1:0".parse().unwrap(),
        RateLimitConfig {
            redis_url: "cassandra://127.0.0.1:1".into(),
            ..RateLimitConfig::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("invalid Redis URL"), "{err}");
}

#[tokio::test]
async fn the_cli_serves_until_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let redis = RedisServer::start().unwrap();
    let listen = tollgate_harness::envoy::free_port("127.0.0.1".parse().unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-harness"))
        .args(["ratelimit", "--listen", &listen.to_string(), "--redis"])
        .arg(redis.url())
        .args(["--hold-ttl", "60s", "--timeout", "300ms"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with(&format!("ratelimit: grpc://{listen}")),
        "{line}"
    );

    let mut client = RateLimitServiceClient::connect(format!("http://{listen}"))
        .await
        .unwrap();
    let r = call(&mut client, &[d("tokens", 10, 10)]).await.unwrap();
    assert_eq!(r.overall_code, Code::Ok as i32);
    let r = call(&mut client, &[d("tokens", 10, 1)]).await.unwrap();
    assert_eq!(r.overall_code, Code::OverLimit as i32);
    drop(client);

    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
}

#[test]
fn the_cli_refuses_bad_arguments() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-harness"))
            .arg("ratelimit")
            .args(args)
            .output()
            .unwrap()
    };
    for (args, message) in [
        (&["--timeout", "250"][..], "not a duration like 250ms"),
        (&["--listen", "nowhere"][..], "is not an address"),
        (&["--redis", "cassandra://x"][..], "invalid Redis URL"),
        (&["--timeout", "0ms"][..], "the timeout must be positive"),
        (&["--bogus"][..], "unexpected argument"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
