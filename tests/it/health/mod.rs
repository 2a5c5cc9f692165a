//! `dhctl-health` end to end against real PostgreSQL and Redis (and private redis-servers where
//! Redis must go away and come back, or speak TLS): the server runs in process through
//! `serve(listener, config, shutdown)` on port 0; only the tests of signals and exit codes run
//! the real binary.

mod adv_metrics;
mod disclosure;
mod metrics;
mod readiness;
mod redis_tls;
mod robustness;
mod routes;
mod slow_readers;
pub mod support;
