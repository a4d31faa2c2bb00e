//! Integration tests: the real server on port 0, driven through WebSocket and HTTP, one line
//! of PROTOCOL.md after another.

mod cluster;
mod connect;
mod drain;
mod dynamodb;
mod helpers;
mod http;
mod instance_loss;
mod limits;
mod liveness;
mod process;
mod records;
mod redis_cluster;
mod routing;
