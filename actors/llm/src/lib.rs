//! LLM proposers for dgm.
pub fn ok() {}
