//! keyscope-report.
