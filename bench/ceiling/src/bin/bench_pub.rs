//! The ceiling publisher: a plain rumqttc client sending the typical event as fast as it can.
//!
//! bench-pub MODE --host H --port P --topic T [--qos Q] [--n N] ...
//!   throughput  N events as fast as possible (async client, one thread); reports the start
//!               time, when the last was written (QoS 0) or acknowledged (QoS 1), CPU and RSS;
//!               --checkpoints K also samples RSS K times along the way
//!   cost        N events from a caller thread through the blocking client (its connection on
//!               another thread, like the plugin's core); reports each call's duration
//!   latency     N events paced --interval-us apart (blocking client); writes "seq send_ns"
//!               lines to --times
//! Prints one JSON object on stdout when done.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mqtt_bench_ceiling::{cpu_seconds, event_payload, mono_ns, options, percentile, rss_kib, unix_now, Args};
use rumqttc::{Event, Incoming, Outgoing, QoS};

fn main() {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().expect("mode: throughput, cost or latency");
    let args = Args::parse(argv);
    let json = match mode.as_str() {
        "throughput" => throughput(&args),
        "cost" => cost(&args),
        "latency" => latency(&args),
        other => panic!("unknown mode {other:?}"),
    };
    println!("{json}");
}

fn counts(ev: &Event, qos: QoS) -> bool {
    match (qos, ev) {
        (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_))) => true,
        (QoS::AtLeastOnce, Event::Incoming(Incoming::PubAck(_))) => true,
        (QoS::ExactlyOnce, Event::Incoming(Incoming::PubComp(_))) => true,
        _ => false,
    }
}

fn throughput(args: &Args) -> String {
    let host = args.str("host", "127.0.0.1");
    let port: u16 = args.num("port", 1883);
    let topic = args.str("topic", "bench/event/FileAdded");
    let qos = args.qos();
    let n: u64 = args.num("n", 100_000);
    let checkpoints: u64 = args.num("checkpoints", 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let (opts, net) = options(&format!("ceiling-{}", std::process::id()), &host, port);
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 1024);
        el.set_network_options(net);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("cannot connect: {e}"),
            }
        }
        let rss_connected = rss_kib().0;
        let ts = unix_now();
        let cpu0 = cpu_seconds();
        let t0 = mono_ns();
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let samples_w = samples.clone();
        let publisher = tokio::spawn(async move {
            let every = if checkpoints > 0 { (n / checkpoints).max(1) } else { u64::MAX };
            for i in 0..n {
                client
                    .publish(topic.as_str(), qos, false, event_payload(i, ts))
                    .await
                    .expect("publish");
                if (i + 1) % every == 0 {
                    samples_w.lock().unwrap().push((i + 1, rss_kib().0));
                }
            }
            client
        });
        let mut done = 0u64;
        while done < n {
            match el.poll().await {
                Ok(ev) if counts(&ev, qos) => done += 1,
                Ok(_) => {}
                Err(e) => panic!("connection failed after {done} messages: {e}"),
            }
        }
        let t_done = mono_ns();
        let cpu1 = cpu_seconds();
        let client = publisher.await.expect("publisher task");
        let (rss, hwm) = rss_kib();
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
        let mut cps = String::new();
        for (i, (count, kib)) in samples.lock().unwrap().iter().enumerate() {
            let _ = write!(cps, "{}[{count},{kib}]", if i == 0 { "" } else { "," });
        }
        format!(
            "{{\"n\":{n},\"t0_ns\":{t0},\"t_done_ns\":{t_done},\"cpu_user\":{},\"cpu_sys\":{},\
\"rss_connected_kib\":{rss_connected},\"rss_kib\":{rss},\"hwm_kib\":{hwm},\"checkpoints\":[{cps}]}}",
            cpu1.0 - cpu0.0,
            cpu1.1 - cpu0.1
        )
    })
}

/// A blocking client whose connection runs on a thread of its own; `done` counts messages
/// written (QoS 0) or acknowledged (QoS 1).
fn blocking_client(args: &Args, qos: QoS) -> (rumqttc::Client, Arc<AtomicU64>) {
    let host = args.str("host", "127.0.0.1");
    let port: u16 = args.num("port", 1883);
    let (opts, net) = options(&format!("ceiling-{}", std::process::id()), &host, port);
    // As deep as the plugin's command channel, so a burst does not make the caller wait.
    let (client, mut conn) = rumqttc::Client::new(opts, 65_536);
    conn.eventloop.set_network_options(net);
    let done = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicBool::new(false));
    let (d, c) = (done.clone(), connected.clone());
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => c.store(true, Ordering::SeqCst),
                Ok(ev) if counts(&ev, qos) => {
                    d.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("connection error: {e}");
                    return;
                }
            }
        }
    });
    let deadline = mono_ns() + 10_000_000_000;
    while !connected.load(Ordering::SeqCst) {
        assert!(mono_ns() < deadline, "not connected within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    (client, done)
}

fn wait_done(done: &AtomicU64, n: u64) -> u64 {
    let deadline = mono_ns() + 60_000_000_000;
    while done.load(Ordering::Relaxed) < n && mono_ns() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    mono_ns()
}

fn cost(args: &Args) -> String {
    let qos = args.qos();
    let n: u64 = args.num("n", 100_000);
    let topic = args.str("topic", "bench/event/FileAdded");
    let (client, done) = blocking_client(args, qos);
    std::thread::sleep(Duration::from_millis(50));
    let ts = unix_now();
    let mut times = Vec::with_capacity(n as usize);
    let cpu0 = cpu_seconds();
    let t0 = mono_ns();
    for i in 0..n {
        let start = mono_ns();
        client
            .publish(topic.as_str(), qos, false, event_payload(i, ts))
            .expect("publish");
        times.push(mono_ns() - start);
    }
    let t_done = wait_done(&done, n);
    let cpu1 = cpu_seconds();
    let _ = client.disconnect();
    times.sort_unstable();
    format!(
        "{{\"n\":{n},\"t0_ns\":{t0},\"t_done_ns\":{t_done},\"delivered\":{},\"p50_ns\":{},\"p99_ns\":{},\"max_ns\":{},\
\"cpu_user\":{},\"cpu_sys\":{}}}",
        done.load(Ordering::Relaxed),
        percentile(&times, 50.0),
        percentile(&times, 99.0),
        times.last().copied().unwrap_or(0),
        cpu1.0 - cpu0.0,
        cpu1.1 - cpu0.1
    )
}

fn latency(args: &Args) -> String {
    let qos = args.qos();
    let n: u64 = args.num("n", 2_000);
    let interval: u64 = args.num("interval-us", 1_000);
    let topic = args.str("topic", "bench/event/FileAdded");
    let out = args.str("times", "send_times.txt");
    let (client, done) = blocking_client(args, qos);
    std::thread::sleep(Duration::from_millis(50));
    let ts = unix_now();
    let mut sent = Vec::with_capacity(n as usize);
    let mut costs = Vec::with_capacity(n as usize);
    let start = mono_ns() + 1_000_000;
    for i in 0..n {
        let target = start + i * interval * 1000;
        let now = mono_ns();
        if target > now {
            std::thread::sleep(Duration::from_nanos(target - now));
        }
        let payload = event_payload(i, ts);
        let t = mono_ns();
        client.publish(topic.as_str(), qos, false, payload).expect("publish");
        costs.push(mono_ns() - t);
        sent.push((i, t));
    }
    wait_done(&done, n);
    let _ = client.disconnect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out).expect("times file"));
    for (i, t) in &sent {
        writeln!(f, "{i} {t}").expect("write times");
    }
    f.flush().expect("write times");
    costs.sort_unstable();
    format!(
        "{{\"n\":{n},\"delivered\":{},\"p50_ns\":{},\"p99_ns\":{}}}",
        done.load(Ordering::Relaxed),
        percentile(&costs, 50.0),
        percentile(&costs, 99.0)
    )
}
