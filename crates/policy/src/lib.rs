//! keyscope-policy.
