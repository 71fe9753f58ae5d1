//! Just enough HTTP/1.1 for the lab: a thread-per-connection server and a
//! blocking client with a deadline. One request per connection both ways.

pub mod client;
pub mod server;

pub use server::{query_param, serve, Handler, Peer, Request, Response};
