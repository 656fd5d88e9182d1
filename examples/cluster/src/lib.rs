//! The counter as a real cluster: `cluster-node` is a node program hosting
//! the quick start's `Counter` and persistent `Visits` (state in
//! PostgreSQL, membership in etcd), configured by flags, environment
//! variables or a YAML file; `cluster-client` calls them through a gate
//! with `goverse::Client`; `run.sh` starts etcd, PostgreSQL, three nodes
//! and a gate with one command. See this directory's README.md.

pub use example_counter::{Counter, CounterClient, Visits, VisitsClient};
