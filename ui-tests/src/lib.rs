//! Nothing to export: the cases live in `ui/` and run from `tests/macro_ui.rs`.
