//! `stabspace-index`: the approximate-nearest-neighbour engine of stabspace.
//!
//! This crate knows vectors, string ids, opaque per-row payloads and files. It never
//! sees SQL, instruments or portfolios. The partition format and the HNSW search
//! arrive with the index-engine work; this member exists so the workspace has its
//! final shape.
