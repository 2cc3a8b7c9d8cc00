//! Detector throughput: a blob with no keyword (the common case), a realistic source file with a
//! few keys, and a minified bundle full of keyword-like noise. Also the cost of building the
//! engine from the built-in rules, which every process pays once.
#![expect(
    clippy::expect_used,
    reason = "a benchmark cannot run without its engine"
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keyscope_rules::RuleSet;
use keyscope_scan::Detector;

fn corpus_plain(len: usize) -> Vec<u8> {
    let line = b"<p>The <code>Iterator</code> trait's task-oriented methods: map, filter, fold, disk-backed iterators and such.</p>\n";
    line.iter().copied().cycle().take(len).collect()
}

fn corpus_with_keys(len: usize) -> Vec<u8> {
    let mut data = corpus_plain(len);
    let key = format!(
        "\nGROQ_API_KEY=gsk_{}\n",
        "q8Zr3LwX0pVt7KcN2bYh5MfJ1sDg4TuA9eRo6WiL".repeat(2)[..52].to_owned()
    );
    for at in (0..len.saturating_sub(key.len())).step_by(64 * 1024) {
        data[at..at + key.len()].copy_from_slice(key.as_bytes());
    }
    data
}

fn corpus_minified(len: usize) -> Vec<u8> {
    let chunk = b"var a=\"sk-\"+b;c.AIza=d;function hf_(x){return x}/*api-key*/";
    chunk.iter().copied().cycle().take(len).collect()
}

fn bench(c: &mut Criterion) {
    c.bench_function("engine_build_builtin", |b| {
        b.iter(|| Detector::new(RuleSet::builtin().expect("rules")).expect("engine"))
    });
    let engine = Detector::new(RuleSet::builtin().expect("rules")).expect("engine");
    let mut group = c.benchmark_group("scan");
    let len = 4 << 20;
    for (name, data) in [
        ("plain", corpus_plain(len)),
        ("with_keys", corpus_with_keys(len)),
        ("minified_noise", corpus_minified(len)),
    ] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &data, |b, data| {
            b.iter(|| engine.scan(data))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
