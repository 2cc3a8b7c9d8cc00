//! A load generator for `keyscope serve`, in process, over real sockets (HTTP/1.1 keep-alive):
//! the service on the bench store (1,000 scopes, 200 models, `crates/policy/benches/common`)
//! and, in the same run, the library call and a bare Cedar authorizer over the same policies.
//!
//! ```sh
//! cargo bench -p keyscope-server --bench load            # everything, about a minute
//! cargo bench -p keyscope-server --bench load -- --quick # shorter runs
//! # only some parts: throughput, rate, batch, audit, ledger, library
//! cargo bench -p keyscope-server --bench load -- --quick --only rate,batch
//! # the open loop at other rates or over other numbers of connections; more audit rounds
//! cargo bench -p keyscope-server --bench load -- --only rate --rates 10000 --connections 4
//! cargo bench -p keyscope-server --bench load -- --only audit --rounds 4
//! # against a `keyscope serve` process on the same store (see bench_store.sh)
//! cargo bench -p keyscope-server --bench load -- --addr 127.0.0.1:8181 [--pid PID]
//! cargo bench -p keyscope-server --bench load -- --cycles 127.0.0.1:8181,127.0.0.1:8182
//! ```
//!
//! Results and where the time goes: `crates/server/BENCHMARKS.md`.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a bench binary: it prints its results and fails loudly"
)]

#[path = "../../policy/benches/common/mod.rs"]
mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyscope_policy::Ledger;
use keyscope_server::{Limits, Service, ServiceConfig};
use serde_json::json;

/// A keep-alive HTTP/1.1 connection that POSTs JSON.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Sends one POST and reads its answer: the status and the body.
    fn post(&mut self, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.writer.write_all(&request).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer).unwrap();
        (status, answer)
    }
}

/// Where the CPU seconds spent so far are read: the service's (its threads in this process, or
/// a `keyscope serve` process) and the load generator's.
struct Meter {
    service: Box<dyn Fn() -> f64>,
    generator: Box<dyn Fn() -> f64>,
}

impl Meter {
    /// The service in this process: its `keyscope-*` threads; the rest is the load generator.
    fn in_process() -> Self {
        Self {
            service: Box::new(|| cpu_seconds().0),
            generator: Box::new(|| {
                let (service, all) = cpu_seconds();
                all - service
            }),
        }
    }

    /// A `keyscope serve` process `pid`; this whole process is the load generator.
    fn process(pid: u32) -> Self {
        Self {
            service: Box::new(move || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| stat_seconds(&stat).map(|(_, seconds)| seconds))
                    .unwrap_or(0.0)
            }),
            generator: Box::new(|| cpu_seconds().1),
        }
    }
}

fn allowed(answer: &[u8]) -> bool {
    let needle = b"\"decision\":true";
    answer.windows(needle.len()).any(|w| w == needle)
}

fn evaluation(key: usize, request_id: Option<&str>, reserve: bool) -> Vec<u8> {
    let mut context = json!({"source_ip": "10.1.2.3", "input_tokens": 1200,
                             "max_output_tokens": 800});
    if let Some(id) = request_id {
        context["request_id"] = json!(id);
        context["reserve"] = json!(reserve);
    }
    json!({
        "subject": {"type": "Key", "id": format!("key-{key}")},
        "action": {"name": "invoke"},
        "resource": {"type": "Model", "id": "model-7-2025-01-01"},
        "context": context,
    })
    .to_string()
    .into_bytes()
}

/// Production keys whose network is 10.1.0.0/16 (`a % 250 == 1`, `a % 3 == 0`): allowed. That
/// is `key-501` alone, so the ledger bench is the worst case: every cycle updates the same
/// scope chain.
fn allowed_keys() -> Vec<usize> {
    (0..980).filter(|a| a % 250 == 1 && a % 3 == 0).collect()
}

fn start(ledger: Option<Ledger>, audit: Option<&std::path::Path>) -> Service {
    let mut config = ServiceConfig::new(common::engine(), ledger);
    config.limits = Limits::default().with_concurrency(4_096);
    config.audit = audit.map(|dir| keyscope_policy::audit::AuditLog::open(dir, 65_536).unwrap());
    Service::start("127.0.0.1:0".parse().unwrap(), config).unwrap()
}

/// Closed loop: `clients` connections each sending as fast as answers come, for `run`; the
/// decisions per second.
fn throughput(addr: SocketAddr, clients: usize, run: Duration) -> f64 {
    throughput_and_cpu(addr, clients, run, &Meter::in_process()).0
}

/// [`throughput`], and the service threads' CPU microseconds per request.
fn throughput_and_cpu(
    addr: SocketAddr,
    clients: usize,
    run: Duration,
    meter: &Meter,
) -> (f64, f64) {
    let keys = Arc::new(allowed_keys());
    let cpu_before = (meter.service)();
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                let mut connection = Connection::open(addr);
                let body = evaluation(keys[c % keys.len()], None, false);
                let mut done = 0u64;
                while started.elapsed() < run {
                    let (status, answer) = connection.post("/access/v1/evaluation", &body);
                    assert_eq!(status, 200);
                    assert!(allowed(&answer), "{}", String::from_utf8_lossy(&answer));
                    done += 1;
                }
                done
            })
        })
        .collect();
    let done: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let cpu = (meter.service)() - cpu_before;
    (
        done as f64 / started.elapsed().as_secs_f64(),
        cpu * 1e6 / done as f64,
    )
}

/// Open loop at `rate` requests/s spread over `clients` connections, each request timed from
/// when it was due (so a stall counts against every request it delays); the percentiles.
fn at_rate(addr: SocketAddr, rate: f64, clients: usize, run: Duration) -> Vec<Duration> {
    let keys = Arc::new(allowed_keys());
    let interval = Duration::from_secs_f64(clients as f64 / rate);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                let mut connection = Connection::open(addr);
                let body = evaluation(keys[c % keys.len()], None, false);
                let mut latencies = Vec::new();
                let offset = interval.mul_f64(c as f64 / clients as f64);
                let mut due = started + offset;
                while due.duration_since(started) < run {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let (status, _) = connection.post("/access/v1/evaluation", &body);
                    assert_eq!(status, 200);
                    latencies.push(due.elapsed());
                    due += interval;
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Batches of 100 evaluations, one at a time on one connection: the latency percentiles, and the
/// service's CPU microseconds per batch.
fn batches(addr: SocketAddr, count: usize, meter: &Meter) -> (Vec<Duration>, f64) {
    let keys = allowed_keys();
    let items: Vec<_> = (0..100)
        .map(|i| json!({"subject": {"type": "Key", "id": format!("key-{}", keys[i % keys.len()])}}))
        .collect();
    let body = json!({
        "action": {"name": "invoke"},
        "resource": {"type": "Model", "id": "model-7-2025-01-01"},
        "context": {"source_ip": "10.1.2.3", "input_tokens": 1200, "max_output_tokens": 800},
        "evaluations": items,
    })
    .to_string();
    let mut connection = Connection::open(addr);
    let mut latencies = Vec::with_capacity(count);
    let cpu_before = (meter.service)();
    for _ in 0..count {
        let started = Instant::now();
        let (status, answer) = connection.post("/access/v1/evaluations", body.as_bytes());
        latencies.push(started.elapsed());
        assert_eq!(status, 200);
        assert!(answer.len() > 100 * 100);
    }
    let cpu = (meter.service)() - cpu_before;
    latencies.sort();
    (latencies, cpu * 1e6 / count as f64)
}

/// Reserve then commit, as fast as answers come, from `clients` connections: cycles per second.
fn reserve_commit(addr: SocketAddr, clients: usize, run: Duration, round: usize) -> f64 {
    reserve_commit_across(&[addr], clients, run, round)
}

/// [`reserve_commit`] with the connections spread over several replicas: client `c` talks to
/// `addrs[c % addrs.len()]`.
fn reserve_commit_across(addrs: &[SocketAddr], clients: usize, run: Duration, round: usize) -> f64 {
    let addrs = Arc::new(addrs.to_vec());
    let keys = Arc::new(allowed_keys());
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let keys = Arc::clone(&keys);
            let addrs = Arc::clone(&addrs);
            std::thread::spawn(move || {
                let mut connection = Connection::open(addrs[c % addrs.len()]);
                let mut done = 0u64;
                while started.elapsed() < run {
                    let id = format!("bench-{round}-{c}-{done}");
                    let body = evaluation(keys[c % keys.len()], Some(&id), true);
                    let (status, answer) = connection.post("/access/v1/evaluation", &body);
                    assert_eq!(status, 200);
                    assert!(allowed(&answer), "{}", String::from_utf8_lossy(&answer));
                    let usage = br#"{"input_tokens": 1000, "output_tokens": 500}"#;
                    let (status, _) = connection.post(&format!("/v1/usage/{id}/commit"), usage);
                    assert_eq!(status, 200);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let done: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    done as f64 / started.elapsed().as_secs_f64()
}

/// CPU seconds (user and system) this thread has used.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    stat_seconds(&stat).map_or(0.0, |(_, seconds)| seconds)
}

/// The command name and the CPU seconds (user and system) of a `/proc/.../stat` line.
fn stat_seconds(stat: &str) -> Option<(&str, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the comm.
    Some((stat.get(open + 1..close)?, (ticks(11) + ticks(12)) / 100.0))
}

/// Runs `f` for `run` on this thread: calls per second, and this thread's CPU µs per call.
fn timed(run: Duration, f: &mut dyn FnMut()) -> (f64, f64) {
    let cpu_before = thread_cpu_seconds();
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < run {
        for _ in 0..100 {
            f();
        }
        done += 100;
    }
    let cpu = thread_cpu_seconds() - cpu_before;
    (
        done as f64 / started.elapsed().as_secs_f64(),
        cpu * 1e6 / done as f64,
    )
}

/// The library call, the library call with its audit record, and a bare Cedar authorizer, on
/// this thread: decisions per second and CPU per decision, printed as table rows.
fn in_process(run: Duration) {
    let engine = common::engine();
    let request = common::request();
    let bare = common::bare_cedar_request(&engine);
    let authorizer = cedar_policy::Authorizer::new();
    let (rate, cpu) = timed(run, &mut || {
        assert!(engine.decide(&request).allowed);
    });
    println!(
        "| `Engine::decide` in process, one thread, decisions/s (CPU µs per decision) | {rate:.0} \
         ({cpu:.1}) |"
    );
    let dir = tempfile::tempdir().unwrap();
    let log = keyscope_policy::audit::AuditLog::open(dir.path(), 1 << 22).unwrap();
    let writer_before = cpu_seconds_by_thread().2;
    let (rate, cpu) = timed(run, &mut || {
        let decision = engine.decide(&request);
        log.record(keyscope_policy::audit::AuditRecord::of(&request, &decision))
            .unwrap();
    });
    while log.backlog() > 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Read while the writer thread is still alive: its figures go with it.
    let writer = (cpu_seconds_by_thread().2 - writer_before) * 1e6 / (rate * run.as_secs_f64());
    log.close().unwrap();
    println!(
        "| `Engine::decide` and its audit record queued, one thread, decisions/s (CPU µs per \
         decision: this thread, the audit writer) | {rate:.0} ({cpu:.1}, {writer:.1}) |"
    );
    let store = engine.store();
    let (rate, cpu) = timed(run, &mut || {
        let answer =
            authorizer.is_authorized(&bare, store.cedar_policies(), store.cedar_entities());
        assert_eq!(answer.decision(), cedar_policy::Decision::Allow);
    });
    println!(
        "| bare `cedar_policy::Authorizer::is_authorized`, one thread, decisions/s (CPU µs per \
         decision) | {rate:.0} ({cpu:.1}) |"
    );
}

/// CPU seconds (user and system) used so far by this process's threads named `keyscope-*` (the
/// service's runtime and blocking pool, the audit writer, the ledger's checkpointer) and by the
/// whole process, ended threads included: on a shared machine, CPU time per request says what
/// wall-clock rates cannot.
fn cpu_seconds() -> (f64, f64) {
    let (service, all, _) = cpu_seconds_by_thread();
    (service, all)
}

/// [`cpu_seconds`], and the audit writer's share of the service's.
fn cpu_seconds_by_thread() -> (f64, f64, f64) {
    let mut service = 0.0;
    let mut audit = 0.0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((comm, seconds)) = stat_seconds(&stat) else {
            continue;
        };
        if comm.starts_with("keyscope-") {
            service += seconds;
        }
        if comm == "keyscope-audit" {
            audit += seconds;
        }
    }
    // The whole process's figure counts the threads that have ended too (the load generator's).
    let all = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat_seconds(&stat).map(|(_, seconds)| seconds))
        .unwrap_or(0.0);
    (service, all, audit)
}

/// This process's resident set, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What to run, from the command line.
struct Options {
    run: Duration,
    quick: bool,
    /// The parts to run; all when empty.
    only: Vec<String>,
    rates: Vec<f64>,
    connections: usize,
    rounds: usize,
}

impl Options {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let quick = args.iter().any(|a| a == "--quick");
        Self {
            run: Duration::from_secs(if quick { 2 } else { 5 }),
            quick,
            only: value("--only")
                .map(|v| v.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            rates: value("--rates").map_or(vec![5_000.0, 10_000.0], |v| {
                v.split(',').map(|r| r.parse().unwrap()).collect()
            }),
            connections: value("--connections").map_or(16, |v| v.parse().unwrap()),
            rounds: value("--rounds").map_or(2, |v| v.parse().unwrap()),
        }
    }

    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// The load averages, to say how busy the shared machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The CPU time the hypervisor gave to other guests (`steal` in `/proc/stat`) and the total, in
/// ticks: on a shared VM, a stolen share is time the service could not run however idle the
/// machine looks from inside.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    (ticks.get(7).copied().unwrap_or(0), ticks.iter().sum())
}

/// The share of the CPU stolen between two [`cpu_ticks`] readings, in percent.
fn stolen(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1).max(1);
    after.0.saturating_sub(before.0) as f64 * 100.0 / total as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let options = Options::parse();
    let run = options.run;
    if let Some(replicas) = args
        .iter()
        .position(|a| a == "--cycles")
        .and_then(|i| args.get(i + 1))
    {
        cycles_across(replicas, run);
        return;
    }
    if let Some(addr) = args
        .iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1))
    {
        let pid = args
            .iter()
            .position(|a| a == "--pid")
            .and_then(|i| args.get(i + 1))
            .map(|p| p.parse().unwrap());
        external(addr.parse().unwrap(), &options, pid);
        return;
    }
    println!(
        "## keyscope serve bench: 1,000 scopes, 200 models; {}s runs; load average {}\n",
        run.as_secs(),
        load_average()
    );
    println!("| measurement | result |\n|---|---:|");
    let rss_before = rss_mib();
    let plain = start(None, None);
    service_parts(plain.addr(), &options, &Meter::in_process());
    if options.only.is_empty() {
        println!(
            "| RSS, service with the bench store, after the runs above | {:.1} MiB (before the service: {rss_before:.1}) |",
            rss_mib()
        );
    }
    drop(plain);
    if options.runs("audit") {
        audit_off_on(run, options.rounds);
    }
    if options.runs("ledger") {
        ledger_cycles(run);
    }
    if options.runs("library") {
        in_process(run);
    }
    println!("\nload average after: {}", load_average());
}

/// Closed-loop throughput, open-loop latency and batches against one service.
fn service_parts(addr: SocketAddr, options: &Options, meter: &Meter) {
    let run = options.run;
    throughput(addr, 8, Duration::from_secs(1));
    if options.runs("throughput") {
        for clients in [8, 32] {
            let (rate, cpu) = throughput_and_cpu(addr, clients, run, meter);
            println!(
                "| evaluations/s, {clients} keep-alive connections, closed loop (service CPU µs per \
                 request) | {rate:.0} ({cpu:.1}) |"
            );
        }
    }
    if options.runs("rate") {
        for &rate in &options.rates {
            let clients = options.connections;
            let before = ((meter.service)(), (meter.generator)(), cpu_ticks());
            let latencies = at_rate(addr, rate, clients, run);
            let after = ((meter.service)(), (meter.generator)(), cpu_ticks());
            let per_request = |seconds: f64| seconds * 1e6 / latencies.len() as f64;
            let service = per_request(after.0 - before.0);
            let generator = per_request(after.1 - before.1);
            println!(
                "| at {rate:.0}/s open loop ({clients} connections): p50 / p99 / p99.9 ms \
                 (CPU µs per request: service, load generator; CPU stolen by the host) | {} / {} \
                 / {} ({service:.1}, {generator:.1}; {:.1}%) |",
                ms(percentile(&latencies, 0.5)),
                ms(percentile(&latencies, 0.99)),
                ms(percentile(&latencies, 0.999)),
                stolen(before.2, after.2)
            );
        }
    }
    if options.runs("batch") {
        let ticks = cpu_ticks();
        let (latencies, cpu) = batches(addr, if options.quick { 500 } else { 2_000 }, meter);
        println!(
            "| batch of 100 evaluations, one connection: p50 / p99 ms (service CPU µs per batch; \
             CPU stolen by the host) | {} / {} ({cpu:.0}; {:.1}%) |",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            stolen(ticks, cpu_ticks())
        );
    }
}

/// Replicas started by hand on one shared ledger (issue 15: two `keyscope serve` on one Redis),
/// with `bench_store.sh`'s store.
fn cycles_across(replicas: &str, run: Duration) {
    let addrs: Vec<SocketAddr> = replicas.split(',').map(|a| a.parse().unwrap()).collect();
    println!(
        "| reserve+commit cycles/s over {} replicas | result |\n|---|---:|",
        addrs.len()
    );
    // Request ids must be new to a ledger that earlier runs used: the round is made of the
    // clock, not a counter.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as usize);
    for (round, clients) in [16, 64].into_iter().enumerate() {
        let cycles = reserve_commit_across(&addrs, clients, run, stamp * 10 + round);
        println!("| {clients} connections, closed loop | {cycles:.0} |");
    }
}

/// A `keyscope serve` process started on `bench_store.sh`'s store (no ledger): the binary's own
/// layers, the scanner's masking of every answer included. With `--pid`, the process's CPU per
/// request is read from `/proc`.
fn external(addr: SocketAddr, options: &Options, pid: Option<u32>) {
    println!(
        "## keyscope serve process at {addr}; {}s runs; load average {}\n",
        options.run.as_secs(),
        load_average()
    );
    println!("| measurement | result |\n|---|---:|");
    let meter = pid.map_or_else(
        || Meter {
            service: Box::new(|| f64::NAN),
            generator: Box::new(|| cpu_seconds().1),
        },
        Meter::process,
    );
    service_parts(addr, options, &meter);
    println!("\nload average after: {}", load_average());
}

/// Audit off and on, interleaved in `rounds` rounds, 8 connections each: the throughput and the
/// service CPU per request of each.
fn audit_off_on(run: Duration, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let (mut off_cpu, mut on_cpu, mut writer_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let plain = start(None, None);
        let (rate, cpu) = throughput_and_cpu(plain.addr(), 8, run, &Meter::in_process());
        off.push(rate);
        off_cpu.push(cpu);
        drop(plain);
        let audited = start(None, Some(&dir.path().join(format!("audit-{round}"))));
        let writer_before = cpu_seconds_by_thread().2;
        let (rate, cpu) = throughput_and_cpu(audited.addr(), 8, run, &Meter::in_process());
        let writer = cpu_seconds_by_thread().2 - writer_before;
        on.push(rate);
        on_cpu.push(cpu);
        writer_cpu.push(writer * 1e6 / (rate * run.as_secs_f64()));
        drop(audited);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "| audit off / on, evaluations/s, 8 connections ({rounds} interleaved rounds) | {:.0} / {:.0} ({:+.1}%) |",
        mean(&off),
        mean(&on),
        (mean(&on) / mean(&off) - 1.0) * 100.0
    );
    println!(
        "| audit off / on, service CPU µs per request (the audit writer's part) | {:.1} / {:.1} \
         ({:+.1}%; {:.1}) |",
        mean(&off_cpu),
        mean(&on_cpu),
        (mean(&on_cpu) / mean(&off_cpu) - 1.0) * 100.0,
        mean(&writer_cpu)
    );
}

/// Reserve+commit cycles on a SQLite file ledger.
fn ledger_cycles(run: Duration) {
    let dir = tempfile::tempdir().unwrap();
    for clients in [4, 16] {
        let ledger = Ledger::open(&dir.path().join(format!("ledger-{clients}.sqlite"))).unwrap();
        let service = start(Some(ledger), None);
        let cycles = reserve_commit(service.addr(), clients, run, clients);
        println!(
            "| reserve+commit cycles/s, SQLite file ledger, {clients} connections | {cycles:.0} |"
        );
    }
}
