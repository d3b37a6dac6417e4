//! Heartbeats between the two nodes of a mirror module: the datagram format
//! ([`wire`]) and the transport trait ([`Heartbeat`](crate::services::Heartbeat)).

pub mod wire;
