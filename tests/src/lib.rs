//! Workspace-level end-to-end tests: see `tests/`. The library is empty on purpose.
