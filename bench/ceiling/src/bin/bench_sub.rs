//! The counting subscriber every figure's deliveries are measured with (and the inbound
//! ceiling): a plain rumqttc client in its own process.
//!
//! bench-sub --host H --port P --topic FILTER [--qos Q] [--expect N] [--quiet-ms MS]
//!           [--max-s S] [--times FILE]
//! Prints "ready" once the broker acknowledged the subscription, then one JSON object when it
//! received --expect messages, or nothing arrived for --quiet-ms after the first one, or --max-s
//! passed. --times writes "seq recv_ns" for every message (seq read from the payload).

use std::io::Write as _;
use std::time::Duration;

use mqtt_bench_ceiling::{mono_ns, options, payload_seq, Args};
use rumqttc::{Event, Incoming};

fn main() {
    let args = Args::parse(std::env::args().skip(1));
    let host = args.str("host", "127.0.0.1");
    let port: u16 = args.num("port", 1883);
    let filter = args.str("topic", "bench/#");
    let qos = args.qos();
    let expect: u64 = args.num("expect", u64::MAX);
    let quiet = Duration::from_millis(args.num("quiet-ms", 3000));
    let max = Duration::from_secs(args.num("max-s", 300));
    let times_path = args.str("times", "");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let json = rt.block_on(async move {
        let (opts, net) = options(&format!("bench-sub-{}", std::process::id()), &host, port);
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 64);
        el.set_network_options(net);
        client.subscribe(filter.as_str(), qos).await.expect("subscribe");
        let deadline = tokio::time::Instant::now() + max;
        let mut times: Vec<(u64, u64)> = Vec::new();
        if !times_path.is_empty() {
            times.reserve(100_000);
        }
        let (mut count, mut first, mut last, mut bytes) = (0u64, 0u64, 0u64, 0u64);
        let mut ended_by = "expect";
        while count < expect {
            let limit = if count == 0 {
                deadline
            } else {
                (tokio::time::Instant::now() + quiet).min(deadline)
            };
            let ev = match tokio::time::timeout_at(limit, el.poll()).await {
                Ok(ev) => ev,
                Err(_) => {
                    ended_by = if count == 0 { "max-s" } else { "quiet" };
                    break;
                }
            };
            match ev {
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ready").expect("stdout");
                    out.flush().expect("stdout");
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let now = mono_ns();
                    if count == 0 {
                        first = now;
                    }
                    last = now;
                    count += 1;
                    bytes += p.payload.len() as u64;
                    if !times_path.is_empty() {
                        if let Some(seq) = payload_seq(&p.payload) {
                            times.push((seq, now));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber connection failed after {count} messages: {e}"),
            }
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(100), el.poll()).await;
        if !times_path.is_empty() {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&times_path).expect("times file"));
            for (seq, t) in &times {
                writeln!(f, "{seq} {t}").expect("write times");
            }
            f.flush().expect("write times");
        }
        format!(
            "{{\"count\":{count},\"first_ns\":{first},\"last_ns\":{last},\"bytes\":{bytes},\"ended_by\":\"{ended_by}\"}}"
        )
    });
    println!("{json}");
}
