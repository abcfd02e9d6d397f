//! An in-memory [`Store`](crate::Store) for tests. To be written.
