//! The SQLite [`Store`](crate::Store). To be written.
