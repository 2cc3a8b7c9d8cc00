//! keyscope-scan.
