//! Times the two phases of a history sweep on a repository: reading every object, then
//! attributing every blob whose content contains a given byte string.
//!
//! `cargo run --release -p keyscope-sources --example sweep_timing -- REPO NEEDLE`
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "a measuring tool")]

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use keyscope_sources::{GitObject, GitRepo, SweepOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let repo = GitRepo::open(&args[1])?;
    let needle = args
        .get(2)
        .map_or("sk-", String::as_str)
        .as_bytes()
        .to_vec();
    let started = Instant::now();
    let targets = Mutex::new(HashSet::new());
    let history = repo.for_each_object(&SweepOptions::default(), |object| {
        if let GitObject::Blob { id, data } = object
            && data.windows(needle.len()).any(|w| w == needle)
        {
            targets.lock().unwrap().insert(id);
        }
    })?;
    let read = started.elapsed();
    let targets = targets.into_inner().unwrap();
    let started = Instant::now();
    let attribution = repo.attribute(&history, &targets)?;
    let attributed = started.elapsed();
    let introduced: usize = targets
        .iter()
        .map(|t| attribution.introductions(*t).len())
        .sum();
    println!(
        "objects {} blobs {} bytes {} commits {}: read {:.2?}; {} targets, {} introductions: attributed {:.2?}",
        history.objects,
        history.stats.files,
        history.stats.bytes,
        history.commit_count(),
        read,
        targets.len(),
        introduced,
        attributed
    );
    Ok(())
}
