//! `dhctl-health` end to end: the real binary on port 0 against real PostgreSQL and Redis
//! (and a private redis-server where Redis must go away and come back).

mod disclosure;
mod readiness;
mod redis_tls;
mod robustness;
mod routes;
mod slow_readers;
pub mod support;
