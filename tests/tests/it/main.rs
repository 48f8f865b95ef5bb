//! Integration tests against real nats-server processes. One binary, one module per area.

mod demo_script;
mod deploy_files;
mod nats_harness;
mod provider_sim;
mod relay_ingest;
mod relay_nats_auth;
mod relay_provision;
mod relay_restart;
mod relay_support;
mod agent_support;
mod agent_e2e;
mod agent_burst;
mod agent_faults;
mod agent_crash;
mod agent_replicas;
mod agent_maintenance;
mod agent_nats;
mod agent_sink;
mod agent_e2e_relay;
mod agent_watchdog;
mod agent_process;
mod maintenance_scheduler;
mod operator_support;
mod operator_api;
mod operator_page;
mod security_nats_tls;
