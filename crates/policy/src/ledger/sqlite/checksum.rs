//! Row checksums. SQLite keeps no checksum of its pages, so one flipped byte in an amount would
//! change spend silently, and a budget would let through what it should stop. Every row that
//! counts toward a budget (a request, a folded total, a journal entry) carries a 64-bit FNV-1a
//! hash of its fields, written with the row and checked whenever the row is read; a mismatch is
//! a [`LedgerError::Corrupt`](crate::LedgerError::Corrupt), and decisions on that ledger deny
//! until `keyscope ledger rebuild` has recomputed what can be recomputed.
//!
//! FNV-1a, not a cryptographic hash: it guards against damage, not against someone who can
//! write the file (they could recompute any checksum). Each step is a bijection of the state, so
//! any change of one byte changes the result; fields are length-prefixed, so no two rows share
//! an encoding.

/// A checksum being computed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Checksum(u64);

impl Checksum {
    pub(super) const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    /// Adds a text field.
    pub(super) fn text(self, text: &str) -> Self {
        self.bytes(&(text.len() as u64).to_le_bytes())
            .bytes(text.as_bytes())
    }

    /// Adds an integer field.
    pub(super) fn int(self, value: i64) -> Self {
        self.bytes(&value.to_le_bytes())
    }

    /// The checksum, as SQLite stores an `INTEGER`.
    pub(super) const fn finish(self) -> i64 {
        i64::from_ne_bytes(self.0.to_ne_bytes())
    }
}

/// The checksum of a row of `totals`.
pub(super) fn totals_row(scope: &str, period: &str, micros: i64, tokens: i64) -> i64 {
    Checksum::new()
        .text(scope)
        .text(period)
        .int(micros)
        .int(tokens)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_counts() {
        let base = totals_row("team/app", "2026-11-22", 5_000_000, 100);
        assert_ne!(base, totals_row("team/app", "2026-11-22", 5_000_001, 100));
        assert_ne!(base, totals_row("team/apq", "2026-11-22", 5_000_000, 100));
        assert_ne!(base, totals_row("team/app", "2026-11-22", 5_000_000, 101));
        // Length prefixes: moving a character between fields changes the checksum.
        assert_ne!(
            Checksum::new().text("ab").text("c").finish(),
            Checksum::new().text("a").text("bc").finish()
        );
        assert_eq!(base, totals_row("team/app", "2026-11-22", 5_000_000, 100));
    }
}
