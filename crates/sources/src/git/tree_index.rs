//! What a history sweep remembers of every tree it decodes, so that attribution can tell which
//! trees lead to a finding without inflating them a second time.
//!
//! A sweep inflates every tree of the pack anyway (314 MB of tree data for 50,000 trees in a
//! CPython-sized history). Attribution later asks, for a handful of blobs with findings, which
//! trees hold one of them at any depth; reading the trees again for that was a fifth of a sweep's
//! time. So the sweep keeps, per tree, its subtrees and a 16-bit key of each blob it names. The
//! keys can collide: an answer of "may hold" then costs attribution a tree read, which it does
//! anyway for the trees that really hold a target. A "does not hold" is exact.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::ObjectId;

/// A blob's 16-bit key: the first two bytes of its id, which SHA-1 spreads evenly.
fn blob_key(id: &[u8]) -> u16 {
    u16::from_le_bytes([id[0], id[1]])
}

/// Chunks end after a key whose low bits are all set (1 key in 16), so the chunks of two
/// versions of a directory realign right after the entries that differ, and are stored once.
const CHUNK_END_MASK: u16 = 0xf;
/// The longest chunk.
const MAX_CHUNK: usize = 64;

/// One decoded tree: ranges of [`TreeIndex::refs`] and [`TreeIndex::subtrees`].
#[derive(Clone)]
struct Tree {
    decoded: bool,
    chunks: Range<u32>,
    subtrees: Range<u32>,
}

/// Every tree a sweep decoded, by id. A tree's blob keys are stored as a list of chunks, each
/// chunk once however many trees share it: the successive versions of a directory share all
/// but a few entries, and so 7 million blob entries in 50,000 trees take 3 MB, not 14.
#[derive(Default)]
pub(super) struct TreeIndex {
    slots: gix::hashtable::HashMap<gix::ObjectId, u32>,
    trees: Vec<Tree>,
    /// Distinct chunks by content hash (a collision is stored as a chunk of its own).
    chunk_ids: HashMap<u64, u32>,
    /// Each chunk's range of `keys`.
    chunks: Vec<Range<u32>>,
    keys: Vec<u16>,
    /// Each tree's chunks, in order.
    refs: Vec<u32>,
    /// Each tree's subtrees, as slots.
    subtrees: Vec<u32>,
}

/// The parts of one tree, ready to be added to a [`TreeIndex`] under its lock.
pub(super) struct Parsed {
    keys: Vec<u16>,
    /// Where each chunk of `keys` ends, with its content hash.
    chunks: Vec<(usize, u64)>,
    subtrees: Vec<gix::ObjectId>,
    /// Every blob the tree names, in full: the sweep checks that each one is in the database.
    pub(super) blobs: Vec<gix::ObjectId>,
}

impl Parsed {
    /// The blobs and subtrees the tree names.
    pub(super) fn references(&self) -> impl Iterator<Item = &gix::ObjectId> {
        self.blobs.iter().chain(&self.subtrees)
    }
}

/// Reads a tree object's entries, or `None` if it is malformed (attribution then reads it
/// again and reports the error where it matters).
pub(super) fn parse(data: &[u8], hash: gix::hash::Kind) -> Option<Parsed> {
    let id_len = hash.len_in_bytes();
    let mut parsed = Parsed {
        keys: Vec::new(),
        chunks: Vec::new(),
        subtrees: Vec::new(),
        blobs: Vec::new(),
    };
    let mut chunk_hash = CHUNK_SEED;
    let mut chunk_start = 0;
    let mut rest = data;
    while !rest.is_empty() {
        // `<octal mode> <name>\0<id>`
        let nul = memchr::memchr(0, rest)?;
        let mode_end = memchr::memchr(b' ', &rest[..nul])?;
        let id = rest.get(nul + 1..nul + 1 + id_len)?;
        match &rest[..mode_end] {
            b"40000" => parsed.subtrees.push(gix::ObjectId::from_bytes_or_panic(id)),
            b"100644" | b"100755" | b"100664" | b"100600" => {
                let key = blob_key(id);
                parsed.keys.push(key);
                parsed.blobs.push(gix::ObjectId::from_bytes_or_panic(id));
                chunk_hash = (chunk_hash.rotate_left(5) ^ u64::from(key)).wrapping_mul(CHUNK_MUL);
                if key & CHUNK_END_MASK == CHUNK_END_MASK
                    || parsed.keys.len() - chunk_start == MAX_CHUNK
                {
                    parsed.chunks.push((parsed.keys.len(), chunk_hash));
                    chunk_hash = CHUNK_SEED;
                    chunk_start = parsed.keys.len();
                }
            }
            // Symlinks and submodules hold no blob worth scanning.
            b"120000" | b"160000" => {}
            // An invalid mode is left to the reader that reports errors.
            _ => return None,
        }
        rest = &rest[nul + 1 + id_len..];
    }
    if chunk_start < parsed.keys.len() {
        parsed.chunks.push((parsed.keys.len(), chunk_hash));
    }
    Some(parsed)
}

const CHUNK_SEED: u64 = 0x243f_6a88_85a3_08d3;
const CHUNK_MUL: u64 = 0x517c_c1b7_2722_0a95;

/// `u32` offsets: an index past 4 billion entries saturates, and the tree then reads as not
/// decoded (attribution reads it itself).
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl TreeIndex {
    fn slot(&mut self, id: gix::ObjectId) -> u32 {
        let next = offset(self.trees.len());
        let slot = *self.slots.entry(id).or_insert(next);
        if slot == next {
            self.trees.push(Tree {
                decoded: false,
                chunks: 0..0,
                subtrees: 0..0,
            });
        }
        slot
    }

    fn chunk(&mut self, keys: &[u16], hash: u64) -> u32 {
        if let Some(&id) = self.chunk_ids.get(&hash) {
            let range = &self.chunks[id as usize];
            if self.keys[range.start as usize..range.end as usize] == *keys {
                return id;
            }
        }
        let id = offset(self.chunks.len());
        let start = offset(self.keys.len());
        self.keys.extend_from_slice(keys);
        self.chunks.push(start..offset(self.keys.len()));
        self.chunk_ids.entry(hash).or_insert(id);
        id
    }

    /// Records tree `id`.
    pub(super) fn insert(&mut self, id: gix::ObjectId, parsed: Parsed) {
        let refs_start = offset(self.refs.len());
        let mut start = 0;
        for &(end, hash) in &parsed.chunks {
            let chunk = self.chunk(&parsed.keys[start..end], hash);
            self.refs.push(chunk);
            start = end;
        }
        let refs = refs_start..offset(self.refs.len());
        let subtrees_start = offset(self.subtrees.len());
        for subtree in parsed.subtrees {
            let slot = self.slot(subtree);
            self.subtrees.push(slot);
        }
        let subtrees = subtrees_start..offset(self.subtrees.len());
        let slot = self.slot(id) as usize;
        if let Some(tree) = self.trees.get_mut(slot) {
            *tree = Tree {
                decoded: refs.end != u32::MAX && subtrees.end != u32::MAX,
                chunks: refs,
                subtrees,
            };
        }
    }

    /// A question about a set of target blobs: which trees may hold one of them.
    pub(super) fn holders(&self, targets: &HashSet<ObjectId>) -> Holders<'_> {
        let mut target_keys = vec![0u64; 1 << 10];
        for target in targets {
            let key = usize::from(blob_key(target.0.as_bytes()));
            target_keys[key / 64] |= 1 << (key % 64);
        }
        let hits = self
            .chunks
            .iter()
            .map(|range| {
                self.keys[range.start as usize..range.end as usize]
                    .iter()
                    .any(|&k| {
                        let k = usize::from(k);
                        target_keys[k / 64] & (1 << (k % 64)) != 0
                    })
            })
            .collect();
        let mut holders = Holders {
            index: self,
            hits,
            memo: vec![Memo::Unknown; self.trees.len()],
        };
        for slot in 0..self.trees.len() {
            holders.slot_may_hold(offset(slot));
        }
        holders
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Memo {
    Unknown,
    /// On the stack of the walk that is answering it (a cycle, possible only in a corrupt
    /// database, counts as "may hold").
    Asking,
    No,
    Maybe,
}

/// Which trees may hold (at any depth) one of a set of target blobs, worked out for every tree
/// at once (one pass over the index) so that threads can share the answers. `false` is exact;
/// `true` may be a key collision, or a tree the sweep could not decode.
pub(super) struct Holders<'a> {
    index: &'a TreeIndex,
    /// For each chunk, whether it names a target's key.
    hits: Vec<bool>,
    memo: Vec<Memo>,
}

impl Holders<'_> {
    /// Whether tree `id` may hold a target; `None` if the sweep did not see it.
    pub(super) fn may_hold(&self, id: &gix::oid) -> Option<bool> {
        let slot = *self.index.slots.get(id)? as usize;
        self.index.trees[slot]
            .decoded
            .then_some(self.memo[slot] == Memo::Maybe)
    }

    fn slot_may_hold(&mut self, start: u32) -> bool {
        let index = self.index;
        // Depth-first without recursion: trees nest as deep as a repository's directories.
        // Each frame is a tree and the next of its subtrees to ask about.
        let mut stack: Vec<(u32, usize)> = vec![(start, 0)];
        while let Some(&(slot, next)) = stack.last() {
            let s = slot as usize;
            if next == 0 {
                match self.memo[s] {
                    Memo::No => {
                        stack.pop();
                        continue;
                    }
                    Memo::Maybe | Memo::Asking => {
                        self.maybe(&mut stack);
                        continue;
                    }
                    Memo::Unknown => {}
                }
            }
            let tree = &index.trees[s];
            if !tree.decoded {
                self.maybe(&mut stack);
                continue;
            }
            if next == 0 {
                let chunks = &index.refs[tree.chunks.start as usize..tree.chunks.end as usize];
                if chunks.iter().any(|&c| self.hits[c as usize]) {
                    self.maybe(&mut stack);
                    continue;
                }
                self.memo[s] = Memo::Asking;
            }
            let subtrees =
                &index.subtrees[tree.subtrees.start as usize..tree.subtrees.end as usize];
            match subtrees.get(next) {
                Some(&child) => {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    stack.push((child, 0));
                }
                None => {
                    self.memo[s] = Memo::No;
                    stack.pop();
                }
            }
        }
        self.memo[start as usize] == Memo::Maybe
    }

    /// Marks the top of the stack "may hold", and with it every tree below it on the stack,
    /// each of which holds it: the walk is over.
    fn maybe(&mut self, stack: &mut Vec<(u32, usize)>) {
        for &(slot, _) in stack.iter() {
            self.memo[slot as usize] = Memo::Maybe;
        }
        stack.clear();
    }
}

impl std::fmt::Debug for TreeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeIndex")
            .field("trees", &self.trees.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: gix::hash::Kind = gix::hash::Kind::Sha1;

    fn id(first: u8, second: u8, rest: u8) -> gix::ObjectId {
        let mut bytes = [rest; 20];
        bytes[0] = first;
        bytes[1] = second;
        gix::ObjectId::from_bytes_or_panic(&bytes)
    }

    /// A raw tree object from `(mode, name, id)` entries.
    fn tree(entries: &[(&str, &str, gix::ObjectId)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (mode, name, id) in entries {
            data.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            data.extend_from_slice(id.as_bytes());
        }
        data
    }

    fn index(trees: &[(gix::ObjectId, Vec<u8>)]) -> TreeIndex {
        let mut index = TreeIndex::default();
        for (id, data) in trees {
            index.insert(*id, parse(data, SHA1).expect("well-formed tree"));
        }
        index
    }

    fn targets(ids: &[gix::ObjectId]) -> HashSet<ObjectId> {
        ids.iter().map(|&id| ObjectId(id)).collect()
    }

    #[test]
    fn parses_blobs_subtrees_and_skips_links() {
        let data = tree(&[
            ("100644", "a.txt", id(1, 2, 3)),
            ("100755", "run.sh", id(4, 5, 6)),
            ("120000", "link", id(7, 8, 9)),
            ("160000", "module", id(10, 11, 12)),
            ("40000", "src", id(13, 14, 15)),
        ]);
        let parsed = parse(&data, SHA1).unwrap();
        assert_eq!(parsed.keys, [0x0201, 0x0504]);
        assert_eq!(parsed.subtrees, [id(13, 14, 15)]);
    }

    #[test]
    fn a_malformed_tree_is_not_summarized() {
        let good = tree(&[("100644", "a.txt", id(1, 2, 3))]);
        assert!(
            parse(&good[..good.len() - 1], SHA1).is_none(),
            "truncated id"
        );
        assert!(parse(b"100644 no-nul-here", SHA1).is_none());
        let bad_mode = tree(&[("777", "a.txt", id(1, 2, 3))]);
        assert!(parse(&bad_mode, SHA1).is_none());
    }

    #[test]
    fn versions_of_a_directory_share_their_chunks() {
        // 200 files; the second version changes one of them.
        let files: Vec<(String, gix::ObjectId)> = (0..200u32)
            .map(|i| {
                let b = i.to_le_bytes();
                (
                    format!("f{i:03}"),
                    id(b[0].wrapping_mul(37), b[0] ^ 0x5a, b[1]),
                )
            })
            .collect();
        let entries = |files: &[(String, gix::ObjectId)]| {
            tree(
                &files
                    .iter()
                    .map(|(name, id)| ("100644", name.as_str(), *id))
                    .collect::<Vec<_>>(),
            )
        };
        let mut changed = files.clone();
        changed[100].1 = id(0xee, 0xee, 0xee);
        let index = index(&[
            (id(1, 1, 1), entries(&files)),
            (id(2, 2, 2), entries(&changed)),
        ]);
        assert!(
            index.keys.len() < 200 + MAX_CHUNK,
            "{} keys stored for 400 entries",
            index.keys.len()
        );
        let holders = index.holders(&targets(&[id(0xee, 0xee, 0xee)]));
        assert_eq!(holders.may_hold(&id(1, 1, 1)), Some(false));
        assert_eq!(holders.may_hold(&id(2, 2, 2)), Some(true));
    }

    #[test]
    fn holders_follow_subtrees_and_doubt_what_was_not_decoded() {
        let secret = id(0xab, 0xcd, 1);
        let index = index(&[
            (id(1, 0, 0), tree(&[("40000", "config", id(2, 0, 0))])),
            (id(2, 0, 0), tree(&[("100644", ".env", secret)])),
            (id(3, 0, 0), tree(&[("100644", "README", id(9, 9, 9))])),
            // Names a subtree the sweep never decoded (missing or corrupt).
            (id(4, 0, 0), tree(&[("40000", "lost", id(5, 0, 0))])),
            (
                id(6, 0, 0),
                tree(&[
                    ("40000", "docs", id(3, 0, 0)),
                    ("40000", "app", id(1, 0, 0)),
                ]),
            ),
        ]);
        let holders = index.holders(&targets(&[secret]));
        assert_eq!(
            holders.may_hold(&id(1, 0, 0)),
            Some(true),
            "through a subtree"
        );
        assert_eq!(holders.may_hold(&id(2, 0, 0)), Some(true), "directly");
        assert_eq!(holders.may_hold(&id(6, 0, 0)), Some(true), "two levels up");
        assert_eq!(holders.may_hold(&id(3, 0, 0)), Some(false));
        assert_eq!(
            holders.may_hold(&id(4, 0, 0)),
            Some(true),
            "an undecoded subtree"
        );
        assert_eq!(holders.may_hold(&id(5, 0, 0)), None, "not decoded: read it");
        assert_eq!(holders.may_hold(&id(7, 0, 0)), None, "never seen");
        // Another blob with the same 16-bit key: "may hold" (attribution reads the tree).
        let twin = index.holders(&targets(&[id(9, 9, 1)]));
        assert_eq!(twin.may_hold(&id(3, 0, 0)), Some(true));
        assert_eq!(twin.may_hold(&id(2, 0, 0)), Some(false));
    }

    #[test]
    fn a_cycle_of_trees_ends_in_doubt_not_a_hang() {
        let index = index(&[
            (id(1, 0, 0), tree(&[("40000", "a", id(2, 0, 0))])),
            (id(2, 0, 0), tree(&[("40000", "b", id(1, 0, 0))])),
        ]);
        let holders = index.holders(&targets(&[id(9, 9, 9)]));
        assert_eq!(holders.may_hold(&id(1, 0, 0)), Some(true));
        assert_eq!(holders.may_hold(&id(2, 0, 0)), Some(true));
    }
}
