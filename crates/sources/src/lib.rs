//! keyscope-sources.
